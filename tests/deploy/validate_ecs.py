"""Checks deploy/ecs/ offline, for tests/deploy.rs (AWS publishes no JSON schema for these):

- the task definition against botocore's model of ECS's RegisterTaskDefinition (the parameter
  names, types, enums and ranges the API takes; botocore ships its models), then registered with
  moto's ECS, which checks more of its content;
- the service against CreateService's model, then created with moto in a cluster of its name;
- the IAM policy created with moto's IAM, whose policy-document validator is AWS's grammar
  (Version, Statement, Effect, Action, Resource), and each action an operation of its service
  in botocore's models.

Runs in the virtualenv of tests/ecs/setup.sh (botocore, boto3, moto). Usage:
    validate_ecs.py TASK_DEFINITION SERVICE IAM_POLICY
Prints one JSON object, {"task_definition": ..., "service": ..., "actions": [...]}, with what
moto registered; exits 1 with the reason on the first failure.
"""

import json
import os
import sys

# moto answers in-process; nothing may look for real credentials or endpoints.
for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
    os.environ.pop(var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_CONFIG_FILE="/dev/null",
    AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    AWS_EC2_METADATA_DISABLED="true",
)

import boto3  # noqa: E402
import botocore.session  # noqa: E402
from botocore.exceptions import ClientError, ParamValidationError  # noqa: E402
from botocore.validate import validate_parameters  # noqa: E402
from moto import mock_aws  # noqa: E402


def fail(what, reason):
    print(f"{what}: {reason}", file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(path, e)


def check_params(path, model, operation, params):
    try:
        validate_parameters(params, model.operation_model(operation).input_shape)
    except ParamValidationError as e:
        fail(path, f"not valid {model.service_name}:{operation} parameters: {e}")


def main(task_path, service_path, policy_path):
    session = botocore.session.get_session()
    ecs_model = session.get_service_model("ecs")
    task = load(task_path)
    service = load(service_path)
    policy = load(policy_path)
    check_params(task_path, ecs_model, "RegisterTaskDefinition", task)
    check_params(service_path, ecs_model, "CreateService", service)

    actions = []
    for i, statement in enumerate(policy.get("Statement", [])):
        listed = statement.get("Action", [])
        for action in [listed] if isinstance(listed, str) else listed:
            prefix, _, name = action.partition(":")
            try:
                operations = session.get_service_model(prefix).operation_names
            except Exception as e:  # an unknown service prefix
                fail(policy_path, f"Statement[{i}]: {action}: no service {prefix!r}: {e}")
            if name not in operations:
                fail(policy_path, f"Statement[{i}]: {action}: {prefix} has no operation {name}")
            actions.append(action)

    with mock_aws():
        ecs = boto3.client("ecs")
        try:
            registered = ecs.register_task_definition(**task)["taskDefinition"]
        except ClientError as e:
            fail(task_path, f"moto refused RegisterTaskDefinition: {e}")
        ecs.create_cluster(clusterName=service["cluster"])
        # The file's subnets and security groups are placeholders for the user's, and moto
        # looks them up: the same number of each, made in a VPC of moto's, stand in for them.
        ec2 = boto3.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        awsvpc = service["networkConfiguration"]["awsvpcConfiguration"]
        stand_in = dict(service)
        stand_in["networkConfiguration"] = {
            "awsvpcConfiguration": dict(
                awsvpc,
                subnets=[
                    ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"]
                    for i, _ in enumerate(awsvpc["subnets"])
                ],
                securityGroups=[
                    ec2.create_security_group(
                        GroupName=f"seawall-{i}", Description="seawall", VpcId=vpc
                    )["GroupId"]
                    for i, _ in enumerate(awsvpc.get("securityGroups", []))
                ],
            )
        }
        try:
            created = ecs.create_service(**stand_in)["service"]
        except ClientError as e:
            fail(service_path, f"moto refused CreateService: {e}")
        try:
            boto3.client("iam").create_policy(
                PolicyName="seawall-discovery", PolicyDocument=json.dumps(policy)
            )
        except ClientError as e:
            fail(policy_path, f"not a valid IAM policy: {e}")

    print(
        json.dumps(
            {
                "task_definition": registered,
                "service": created,
                "actions": actions,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        fail("usage", "validate_ecs.py TASK_DEFINITION SERVICE IAM_POLICY")
    main(*sys.argv[1:])
