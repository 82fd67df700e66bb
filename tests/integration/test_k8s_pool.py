"""The Kubernetes work pool and deployments against a real Prefect server, no cluster: `churn flows
pool` creates the `kubernetes` pool with the project's template (the server validates it), `churn
flows deploy` registers the environment's deployments from the generated file, and for a flow run of
each the worker's own `resolve_for_flow_run` (what the kubernetes worker calls before it creates a
Job) renders a Job that validates strictly and keeps the contract of tests/unit/test_k8s_jobs.py."""

from __future__ import annotations

import asyncio

from churn.environments import load_environment
from ops import flows_k8s
from tests.unit.test_k8s_jobs import ENVIRONMENTS, TAG, job_problems, schema_problems


async def _jobs(pool_name: str) -> dict[str, dict]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    jobs = {}
    async with get_client() as client:
        pool = await client.read_work_pool(pool_name)
        deployments = await client.read_deployments(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool_name]))
        )
        try:
            for deployment in deployments:
                required = deployment.parameter_openapi_schema.get("required", [])
                run = await client.create_flow_run_from_deployment(
                    deployment.id,
                    parameters={"reason": "a test run"} if "reason" in required else None,
                )
                configuration = await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
                    run, client=client, work_pool=pool, worker_name="test", deployment=deployment
                )
                jobs[deployment.name] = configuration.job_manifest
                await client.delete_flow_run(run.id)
        finally:  # the session's server stays as other tests expect it
            for deployment in deployments:
                await client.delete_deployment(deployment.id)
            await client.delete_work_pool(pool_name)
    return jobs


def test_the_pool_and_deployments_register_and_every_job_the_worker_renders_is_valid(
    prefect_server,
):
    env = load_environment(ENVIRONMENTS, "staging")
    assert flows_k8s.create_pool("staging") == env.work_pool
    out = flows_k8s.deploy("staging", TAG)
    assert "train/train-weekly-staging" in out, out
    jobs = asyncio.run(_jobs(env.work_pool))
    assert sorted(jobs) == sorted(f"{d}-staging" for d in env.flows.deployments)
    for name, job in jobs.items():
        assert schema_problems([job]) == [], name
        assert job_problems(job, env) == [], name
