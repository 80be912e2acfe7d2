# The app as Azure Functions on Azure Container Apps (README, "Deploy to Azure"): Microsoft's Functions host
# with the Python 3.13 worker, Microsoft's ODBC Driver 18 for SQL Server (Azure SQL) and the app's packages.
# Not built in this repository (no container runtime where it is developed); azd builds it in the registry.
FROM mcr.microsoft.com/azure-functions/python:4-python3.13
# checkov:skip=CKV_DOCKER_2: Container Apps ignores HEALTHCHECK; its own probes watch the Functions host's port 80
# checkov:skip=CKV_DOCKER_3: the base image runs the Functions host as root (port 80, /azure-functions-host); its default

# torch build: cpu (PyTorch's CPU wheel index, no CUDA libraries) or cuda (PyPI's Linux wheels, which
# bring the CUDA libraries) for a GPU workload profile. azure.yaml passes what infra/main.bicep chose.
ARG TORCH_BUILD=cpu

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements.txt /requirements.txt
RUN case "$TORCH_BUILD" in \
        cpu) export PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu ;; \
        cuda) ;; \
        *) echo "TORCH_BUILD must be cpu or cuda, not '$TORCH_BUILD'" >&2; exit 1 ;; \
    esac && \
    python -m pip install -r /requirements.txt

COPY . /home/site/wwwroot
