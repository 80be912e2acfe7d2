"""Invalid on purpose: its configuration module raises while the app is imported."""

import azure.functions as func
from app_settings import load_settings

settings = load_settings()
app = func.FunctionApp()
