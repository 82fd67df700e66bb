"""Pure logic shared by flows, tasks and the service: no Prefect, MLflow or BentoML, no file I/O."""
