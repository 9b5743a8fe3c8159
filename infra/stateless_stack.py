"""Everything that can be deleted and rebuilt: the enrolment chain, the identify API and the
workflows (training, forget, re-index), each a construct of its own; this stack instantiates
and wires them. Access is granted per function, on the exact buckets, tables, collection,
vector indexes and state machines it uses (docs/contract.md), and nowhere else.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.enrolment_chain import EnrolmentChain
from infra.face_function import FaceFunction
from infra.forget_workflow import ForgetWorkflow
from infra.function_environment import FunctionDefaults, function_environment
from infra.identify_api import IdentifyApi
from infra.reconciliation import Reconciliation
from infra.reindex_workflow import ReindexWorkflow
from infra.stateful_stack import DataResources
from infra.training_workflow import TrainingWorkflow


class StatelessStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        **kw,
    ):
        super().__init__(scope, construct_id, **kw)
        self.config = config
        self.data = data = DataResources.imported(self, config)
        # Asynchronous invocations that still fail after Lambda's retries, and events that
        # EventBridge could not deliver, land here with their error attributes.
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        defaults = FunctionDefaults(
            config, function_environment(config, data), self.dead_letter_queue
        )

        self.enrolment = EnrolmentChain(
            self,
            "EnrolmentChain",
            data=data,
            defaults=defaults,
        )
        self.training = TrainingWorkflow(self, "TrainingWorkflow", data=data, defaults=defaults)
        self.reindex = ReindexWorkflow(self, "ReindexWorkflow", data=data, defaults=defaults)
        self.reconciliation = Reconciliation(self, "Reconciliation", data=data, defaults=defaults)
        self.forget = ForgetWorkflow(
            self,
            "ForgetWorkflow",
            data=data,
            defaults=defaults,
            training=self.training.state_machine,
        )
        self.api = IdentifyApi(
            self,
            "IdentifyApi",
            data=data,
            defaults=defaults,
            forget=self.forget.state_machine,
        )

        for function in self.functions:
            function.acknowledge_grants()

        CfnOutput(self, "IdentifyUrl", value=self.api.url)
        CfnOutput(
            self, "TrainingStateMachineArn", value=self.training.state_machine.state_machine_arn
        )
        CfnOutput(self, "ForgetStateMachineArn", value=self.forget.state_machine.state_machine_arn)
        CfnOutput(
            self, "ReindexStateMachineArn", value=self.reindex.state_machine.state_machine_arn
        )
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letter_queue.queue_url)

    @property
    def functions(self) -> tuple[FaceFunction, ...]:
        """Every function of the stack, whichever construct holds it."""
        return tuple(node for node in self.node.find_all() if isinstance(node, FaceFunction))
