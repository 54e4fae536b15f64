#!/usr/bin/env python3
# Creates chimewatch's CloudFormation stack on a moto server and prints what it made, for tests/it/stack.rs.
"""Create deploy/cloudformation/chimewatch.yaml on moto, as an operator would on AWS, and report on it.

    python scripts/moto_stack.py MOTO_URL STACK_NAME API_KEY [Parameter=Value ...]

First the stack's prerequisites, made the way deploy/README.md makes them: a VPC with two public and two private
subnets, an ACM certificate, the API key in Secrets Manager. Then CreateStack with them and the extra parameters.
Prints one JSON object:

- status: the stack's status and reason;
- created: every resource moto made (type, logical id, physical id);
- missing: every resource of the template moto did not make (type, logical id, its Condition if it has one), so the
  test can tell the resource types moto's CloudFormation does not implement from conditions that were false;
- outputs: the stack's outputs;
- services: per ECS task definition (gateway, aggregator, archiver, compact), its container's command and the
  environment ECS would give it: Environment, and Secrets resolved from Secrets Manager as ECS resolves them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "cloudformation" / "chimewatch.yaml"
REGION = "us-east-1"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Ref`, `!Sub`...) read as plain values: only the resources' types and
    conditions are needed here."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


CfnLoader.add_multi_constructor("!", _any_tag)


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    url, stack, api_key, *extra = sys.argv[1:]
    session = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    ec2 = boto3.client("ec2", **session)
    cfn = boto3.client("cloudformation", **session)
    secrets = boto3.client("secretsmanager", **session)

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{'ab'[i % 2]}")
        ["Subnet"]["SubnetId"]
        for i in range(4)
    ]
    certificate = boto3.client("acm", **session).request_certificate(DomainName="chimewatch.example.com")
    key_secret = secrets.create_secret(Name=f"{stack}/api-keys", SecretString=api_key)["ARN"]
    parameters = {
        "Image": "chimewatch:test",
        "VpcId": vpc,
        "PublicSubnetIds": ",".join(subnets[:2]),
        "PrivateSubnetIds": ",".join(subnets[2:]),
        "CertificateArn": certificate["CertificateArn"],
        "ApiKeysSecretArn": key_secret,
        "AlarmEmail": "oncall@example.com",
    }
    for pair in extra:
        name, _, value = pair.partition("=")
        parameters[name] = value

    cfn.create_stack(
        StackName=stack,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    made = cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    created = [
        {"type": r["ResourceType"], "logical": r["LogicalResourceId"], "physical": r.get("PhysicalResourceId")}
        for r in made
    ]
    template = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    made_ids = {r["LogicalResourceId"] for r in made}
    missing = [
        {"type": r["Type"], "logical": logical, "condition": r.get("Condition")}
        for logical, r in template["Resources"].items()
        if logical not in made_ids
    ]

    ecs = boto3.client("ecs", **session)
    services = {}
    for r in made:
        if r["ResourceType"] != "AWS::ECS::TaskDefinition":
            continue
        definition = ecs.describe_task_definition(taskDefinition=r["PhysicalResourceId"])["taskDefinition"]
        container = definition["containerDefinitions"][0]
        # moto keeps an `!If [..., !Ref AWS::NoValue]` list item as null where CloudFormation drops it.
        environment = {e["name"]: e["value"] for e in container.get("environment") or [] if e}
        for s in [s for s in container.get("secrets") or [] if s]:
            environment[s["name"]] = secrets.get_secret_value(SecretId=s["valueFrom"])["SecretString"]
        services[container["name"]] = {"command": container.get("command", []), "environment": environment}

    print(json.dumps({
        "status": described["StackStatus"],
        "reason": described.get("StackStatusReason"),
        "created": created,
        "missing": missing,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])},
        "services": services,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
