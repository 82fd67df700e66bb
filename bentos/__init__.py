"""The BentoML service (serving stage): imports the `churn` library only, never Prefect or MLflow."""
