"""The deployer: reconciles a Tencent Cloud account with serverless.yml (README "Deploy").

    PYTHONPATH=shared:. python -m infra.deploy plan|apply

`plan` prints what would change and writes nothing; `apply` makes those changes, invoking
the `invoke_after_deploy` functions (db-migrate) before it deploys the others. Modules,
each owning one thing: settings (the environment and serverless.yml, checked before any
call), target (what the account should hold), scf (the SCF API) and cos (code packages in
COS), plan (the record of changes), reconcile (the walk), and one module per kind of
resource: namespace, layer, functions, invocation (Function URLs, timers, async config,
db-migrate's invoke), concurrency (reserved concurrency, from `max_instances`), domain.
"""
