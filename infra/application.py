"""Build the app's two stacks for one environment (``-c env=dev|prod``) and put cdk-nag's
AwsSolutions checks on them. ``app.py`` calls this; the tests call it on their own App."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import EnvironmentConfig, load_config
from infra.stateful_stack import StatefulStack
from infra.stateless_stack import StatelessStack

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def app_context(env: str, **overrides: str) -> dict:
    """The context `cdk synth -c env=<env>` gives the app (cdk.json's feature flags included),
    for building the same app in-process: ``cdk.App(context=app_context("dev"), outdir=...)``.
    The account and region stay the config's placeholders unless overridden."""
    context = json.loads(CDK_JSON.read_text())["context"]
    return {**context, "env": env, **overrides}


def config_from_context(app: cdk.App) -> EnvironmentConfig:
    """The environment named by ``-c env=...``; the account and region from ``-c account=``
    / ``-c region=``, else from what the CDK CLI resolved (CDK_DEFAULT_ACCOUNT/REGION), else
    the config's placeholders. Raises UnknownEnvironmentError for a missing or unknown env."""
    return load_config(
        app.node.try_get_context("env"),
        account=app.node.try_get_context("account") or os.environ.get("CDK_DEFAULT_ACCOUNT"),
        region=app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION"),
    )


def build(app: cdk.App) -> tuple[StatefulStack, StatelessStack]:
    """The two stacks of the environment the app's context names, on a fresh ``app``.

    cdk.json's context (feature flags) is applied where the app's own context lacks it, so
    an app built in-process with only ``{"env": "dev"}`` equals the one `cdk synth` builds."""
    for key, value in json.loads(CDK_JSON.read_text())["context"].items():
        if app.node.try_get_context(key) is None:
            app.node.set_context(key, value)
    config = config_from_context(app)
    env = cdk.Environment(account=config.account, region=config.region)
    data = StatefulStack(
        app,
        config.stack_name("Data"),
        config=config,
        env=env,
        description=f"facerec ({config.name}): buckets, tables and the Rekognition collection",
        termination_protection=config.retain_data,
    )
    service = StatelessStack(
        app,
        config.stack_name("Service"),
        config=config,
        env=env,
        description=f"facerec ({config.name}): functions, event wiring, workflows and API",
    )
    # The service finds the data by name (no cross-stack reference): deploy the data first.
    service.add_stack_dependency(data)
    for stack in (data, service):
        cdk.Tags.of(stack).add("project", "facerec")
        cdk.Tags.of(stack).add("environment", config.name)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return data, service
