"""The `driftscope` command line: one module per command group, mounted in cli.main.

The top of the layers: the core commands (model, generate, diagnose, sae, features) use only
`diagnostics`; audit, serve and apikey use the service, the workers and the API.
"""
