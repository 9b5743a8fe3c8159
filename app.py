#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth -c env=dev` (or `-c env=prod`). The stacks are in infra/."""

import sys

import aws_cdk as cdk

from infra.application import build
from infra.config import UnknownEnvironmentError


def main() -> None:
    app = cdk.App()
    try:
        build(app)
    except UnknownEnvironmentError as error:
        sys.exit(f"error: {error}")
    app.synth()


if __name__ == "__main__":
    main()
