"""Invalid on purpose: imports a package that requirements.txt forgot."""

import azure.functions as func
import package_nobody_installed  # noqa: F401

app = func.FunctionApp()
