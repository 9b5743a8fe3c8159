"""The CDK app: a stateful stack (buckets, tables, collection) and a stateless one (functions,
event wiring, workflows, API), both built from one frozen per-environment config.

Nothing here imports the runtime package (`layers/facerec`): the stacks only name the handlers.
"""
