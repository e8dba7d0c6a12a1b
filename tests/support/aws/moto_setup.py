"""Sets up moto's server (started by tests/aws.rs with IAM authentication on
after INITIAL_NO_AUTH_ACTION_COUNT=3 calls) as an AWS account would be for
the bridge, and prints JSON with what the test needs.

  moto_setup.py setup ENDPOINT
      an admin user (the three unauthenticated calls), then, signed as that
      admin: role `bridge` allowed to read the secrets, role `denied` allowed
      nothing of them, the Secrets Manager secret `collector/headers`
      (`x-api-key=key-one`), the SSM SecureString `/otel/headers`
      (`{"x-api-key": "key-ssm"}`), and temporary credentials of both roles
      from STS AssumeRole (with session tokens, as Lambda gives them).
  moto_setup.py rotate ENDPOINT ADMIN_KEY ADMIN_SECRET VALUE
      puts a new value in `collector/headers`.
"""

import json
import sys

import boto3

REGION = "eu-west-1"
ACCOUNT = "123456789012"


def client(service, endpoint, key, secret):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def policy(actions):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
    )


def setup(endpoint):
    iam = client("iam", endpoint, "setup", "setup")
    iam.create_user(UserName="admin")
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=policy(["*"]))
    admin = (key["AccessKeyId"], key["SecretAccessKey"])
    iam = client("iam", endpoint, *admin)
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::%s:user/admin" % ACCOUNT},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    iam.create_role(RoleName="bridge", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(
        RoleName="bridge",
        PolicyName="read-headers",
        PolicyDocument=policy(
            ["secretsmanager:GetSecretValue", "ssm:GetParameter", "kms:Decrypt"]
        ),
    )
    iam.create_role(RoleName="denied", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(
        RoleName="denied", PolicyName="logs-only", PolicyDocument=policy(["logs:PutLogEvents"])
    )
    client("secretsmanager", endpoint, *admin).create_secret(
        Name="collector/headers", SecretString="x-api-key=key-one"
    )
    client("ssm", endpoint, *admin).put_parameter(
        Name="/otel/headers", Type="SecureString", Value='{"x-api-key": "key-ssm"}'
    )
    sts = client("sts", endpoint, *admin)
    out = {"admin": {"key": admin[0], "secret": admin[1]}}
    for role in ["bridge", "denied"]:
        c = sts.assume_role(
            RoleArn="arn:aws:iam::%s:role/%s" % (ACCOUNT, role), RoleSessionName="bridge-test"
        )["Credentials"]
        out[role] = {"key": c["AccessKeyId"], "secret": c["SecretAccessKey"], "token": c["SessionToken"]}
    print(json.dumps(out))


def rotate(endpoint, key, secret, value):
    client("secretsmanager", endpoint, key, secret).put_secret_value(
        SecretId="collector/headers", SecretString=value
    )
    print("{}")


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "rotate":
        rotate(*sys.argv[2:6])
    else:
        sys.exit("usage: moto_setup.py setup ENDPOINT | rotate ENDPOINT KEY SECRET VALUE")
