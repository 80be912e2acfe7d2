from .durable_app import Blueprint as Blueprint
from .durable_app import DFApp as DFApp
