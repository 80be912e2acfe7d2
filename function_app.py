"""The Azure Functions app: one ``DFApp`` that registers a blueprint per concern.

Azure's Python worker (and the local host in ``durable_host``) imports this module and indexes the
functions of the single app object below; nothing else happens at import time except, when
``MODEL_PREWARM`` names models, preparing them so the first task does not wait (see ``start_prewarm``).
"""

import azure.durable_functions as df
import azure.functions as func

from activities.delivery import bp as delivery_bp
from activities.inference import bp as inference_bp
from activities.inference import start_prewarm
from activities.persist import bp as persist_bp
from activities.preprocess import bp as preprocess_bp
from api.queue_starter import bp as queue_starter_bp
from api.tasks import bp as tasks_bp
from maintenance.timer import bp as maintenance_bp
from orchestrators.classify import bp as classify_bp
from orchestrators.session import bp as session_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in (
    tasks_bp,
    queue_starter_bp,
    classify_bp,
    session_bp,
    preprocess_bp,
    inference_bp,
    persist_bp,
    delivery_bp,
    maintenance_bp,
):
    app.register_functions(blueprint)

start_prewarm()
