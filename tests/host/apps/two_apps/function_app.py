"""Invalid on purpose: two FunctionRegister instances, which the worker refuses."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp()
other = func.FunctionApp()
