"""Self-test of tests/ecs/emulator.py: starts it and drives it with boto3.

Run from the repo root with the emulator's virtualenv (tests/ecs/setup.sh):

    <venv>/bin/python -m unittest tests/ecs/test_emulator.py

Every ECS response body is also checked against the ECS API's output shapes
(botocore's service model): no nulls, no unknown fields, numbers where the
model has numbers, epoch numbers for timestamps, known enum values. That is
what the AWS SDK for Rust needs to deserialize them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = Path(__file__).resolve().parent
EMULATOR = HERE / "emulator.py"
AMI = "ami-1e749f67"  # a Linux AMI from moto's list (the common example one is Windows)

ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


# ---------------------------------------------------------------------------
# Shape checking of raw ECS responses
# ---------------------------------------------------------------------------
def shape_errors(shape: Any, value: Any, path: str = "$") -> list[str]:
    errors: list[str] = []
    if value is None:
        return [f"{path}: null"]
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        for key, member in value.items():
            if key not in shape.members:
                errors.append(f"{path}.{key}: not in {shape.name}")
            else:
                errors += shape_errors(shape.members[key], member, f"{path}.{key}")
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{path}: expected array, got {type(value).__name__}"]
        for i, item in enumerate(value):
            errors += shape_errors(shape.member, item, f"{path}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected object (map), got {type(value).__name__}"]
        for key, item in value.items():
            errors += shape_errors(shape.value, item, f"{path}[{key!r}]")
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected string, got {value!r}")
        elif shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} not in enum {shape.name}")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected integer, got {value!r}")
    elif kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected number, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected boolean, got {value!r}")
    elif kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected epoch seconds, got {value!r}")
    return errors


class Emulator:
    """The launcher as a subprocess, plus helpers to talk to it."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EMULATOR), "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(timeout=30)
        if not line or not line[0].startswith("listening on 127.0.0.1:"):
            self.proc.kill()
            err = self.proc.stderr.read()
            raise RuntimeError(f"emulator did not start: {line!r}\n{err}")
        self.first_line = line[0]
        self.port = int(line[0].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # Keep stderr drained so the emulator can never block on it.
        self.stderr: list[str] = []
        self._drain = threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True)
        self._drain.start()

    def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            status, raw, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
        return status, (json.loads(raw) if ctype.startswith("application/json") else raw.decode())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.control(method, path, body)
        if status != 200:
            raise AssertionError(f"{method} {path} -> {status} {payload}")
        return payload

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send sig, wait for the exit status, close the pipes."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._drain.join(timeout=5)
            self.proc.stdout.close()
            self.proc.stderr.close()


class EmulatorTest(unittest.TestCase):
    emu: Emulator

    @classmethod
    def setUpClass(cls) -> None:
        os.environ.update(ENV)
        cls.started = time.monotonic()
        cls.emu = Emulator()
        cls.shape_problems: list[str] = []
        config = Config(retries={"total_max_attempts": 1})
        cls.ecs = boto3.client("ecs", endpoint_url=cls.emu.url, config=config)
        cls.ec2 = boto3.client("ec2", endpoint_url=cls.emu.url, config=config)
        cls.ecs.meta.events.register("after-call.ecs", cls._check_shape)
        cls.ecs_shapes = cls.ecs.meta.service_model

        # Shared fixture: cluster "main" with two 127.0.0.1 instances.
        cls.ecs.create_cluster(clusterName="main")
        cls.instance_ids = [cls._run_instance() for _ in range(2)]
        cls.cis = [cls._register("main", iid) for iid in cls.instance_ids]
        cls.ecs.register_task_definition(
            family="api",
            networkMode="bridge",
            containerDefinitions=[
                {
                    "name": "app",
                    "image": "app:1",
                    "memory": 16,
                    "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
                },
                {"name": "log", "image": "log:1", "memory": 16},
            ],
        )

    @classmethod
    def tearDownClass(cls) -> None:
        code = cls.emu.stop()
        if code != 0:
            raise AssertionError(f"emulator exited {code} on SIGTERM: {''.join(cls.emu.stderr)}")
        elapsed = time.monotonic() - cls.started
        if elapsed > 30:
            raise AssertionError(f"self-test took {elapsed:.1f}s (limit 30s)")

    def tearDown(self) -> None:
        problems, self.shape_problems[:] = list(self.shape_problems), []
        self.assertEqual(problems, [], "ECS responses that do not match the API shapes")

    # -- helpers -------------------------------------------------------------
    @classmethod
    def _check_shape(cls, http_response: Any, model: Any, **_: Any) -> None:
        if http_response.status_code != 200:
            return
        body = json.loads(http_response.content or b"{}")
        for problem in shape_errors(model.output_shape, body):
            cls.shape_problems.append(f"{model.name}: {problem}")

    @classmethod
    def _run_instance(cls) -> str:
        resp = cls.ec2.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, InstanceType="t3.small", PrivateIpAddress="127.0.0.1"
        )
        return resp["Instances"][0]["InstanceId"]

    @classmethod
    def _register(cls, cluster: str, instance_id: str) -> str:
        doc = json.dumps(
            {"instanceId": instance_id, "region": "us-east-1", "availabilityZone": "us-east-1a"}
        )
        resp = cls.ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=doc)
        return resp["containerInstance"]["containerInstanceArn"]

    def start(self, instance: str, group: str, family: str = "api", cluster: str = "main", **kw: Any) -> dict:
        resp = self.ecs.start_task(
            cluster=cluster, taskDefinition=family, containerInstances=[instance], group=group, **kw
        )
        self.assertEqual(resp["failures"], [])
        return resp["tasks"][0]

    def describe(self, arns: list[str], cluster: str = "main") -> dict:
        return self.ecs.describe_tasks(cluster=cluster, tasks=arns)

    def set_tasks(self, arns: list[str], **fields: Any) -> list[dict]:
        payload = self.emu.ok("POST", "/_emulator/tasks", {"tasks": arns, **fields})
        for task in payload["tasks"]:
            problems = shape_errors(self.ecs_shapes.shape_for("Task"), task)
            self.assertEqual(problems, [], "control API task JSON")
        return payload["tasks"]

    def list_all(self, **kw: Any) -> list[str]:
        arns, token = [], None
        while True:
            resp = self.ecs.list_tasks(**kw, **({"nextToken": token} if token else {}))
            arns += resp["taskArns"]
            token = resp.get("nextToken")
            if not token:
                return arns

    def assert_code(self, ctx: Any, code: str, status: int = 400) -> None:
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status)

    # -- tests ---------------------------------------------------------------
    def test_shape_checker_catches_problems(self) -> None:
        task = self.ecs_shapes.shape_for("Task")
        self.assertEqual(shape_errors(task, {"taskArn": "a", "version": 1, "createdAt": 1.5}), [])
        bad = {"launchType": "", "containers": None, "cpu": 0, "createdAt": "2024-01-01", "bogus": 1}
        self.assertEqual(len(shape_errors(task, bad)), 5)
        seen: list[int] = []

        def count(**_: Any) -> None:
            seen.append(1)

        self.ecs.meta.events.register("after-call.ecs", count)
        try:
            self.ecs.list_clusters()
        finally:
            self.ecs.meta.events.unregister("after-call.ecs", count)
        self.assertEqual(seen, [1])

    def test_startup_line_and_health(self) -> None:
        self.assertRegex(self.emu.first_line, r"^listening on 127\.0\.0\.1:\d+\n$")
        self.assertEqual(self.emu.control("GET", "/_emulator/health"), (200, "ok"))

    def test_container_instance_to_instance_address(self) -> None:
        arns = self.ecs.list_container_instances(cluster="main")["containerInstanceArns"]
        self.assertEqual(sorted(arns), sorted(self.cis))
        described = self.ecs.describe_container_instances(cluster="main", containerInstances=arns)
        self.assertEqual(described["failures"], [])
        ids = [ci["ec2InstanceId"] for ci in described["containerInstances"]]
        self.assertEqual(sorted(ids), sorted(self.instance_ids))
        reservations = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        instances = [i for r in reservations for i in r["Instances"]]
        self.assertEqual(len(instances), 2)
        for instance in instances:
            self.assertEqual(instance["PrivateIpAddress"], "127.0.0.1")

    def test_tasks_stay_pending_then_run_with_bindings(self) -> None:
        a, b = self.cis
        tasks = [self.start(ci, "service:api") for ci in (a, b, a)]
        arns = [t["taskArn"] for t in tasks]
        self.assertEqual([t["containerInstanceArn"] for t in tasks], [a, b, a])
        for _ in range(4):
            described = self.describe(arns)
            self.assertEqual(described["failures"], [])
            self.assertEqual([t["taskArn"] for t in described["tasks"]], arns)
            for task in described["tasks"]:
                self.assertEqual(task["lastStatus"], "PENDING")
                self.assertEqual(task["desiredStatus"], "RUNNING")
                self.assertEqual(task["group"], "service:api")
                self.assertEqual(task["launchType"], "EC2")
                self.assertEqual([c["name"] for c in task["containers"]], ["app", "log"])
                for container in task["containers"]:
                    self.assertEqual(container["lastStatus"], "PENDING")
                    self.assertEqual(container["networkBindings"], [])

        controlled = self.set_tasks([arns[0]], hostPort=40001, lastStatus="RUNNING")
        self.assertEqual(self.set_tasks(arns[1:], lastStatus="RUNNING")[0]["lastStatus"], "RUNNING")
        described = self.describe(arns)["tasks"]
        self.assertEqual(controlled[0]["containers"][0]["networkBindings"],
                         described[0]["containers"][0]["networkBindings"])
        host_ports = []
        for task in described:
            self.assertEqual(task["lastStatus"], "RUNNING")
            self.assertEqual(task["healthStatus"], "HEALTHY")
            self.assertIn("startedAt", task)
            app, log = task["containers"]
            self.assertEqual(app["taskArn"], task["taskArn"])
            self.assertNotEqual(app["containerArn"], log["containerArn"])
            for container in (app, log):
                self.assertEqual(container["lastStatus"], "RUNNING")
                self.assertEqual(container["healthStatus"], "HEALTHY")
            self.assertEqual(log["networkBindings"], [])
            (binding,) = app["networkBindings"]
            self.assertEqual(
                {k: v for k, v in binding.items() if k != "hostPort"},
                {"bindIP": "0.0.0.0", "containerPort": 8080, "protocol": "tcp"},
            )
            host_ports.append(binding["hostPort"])
        self.assertEqual(host_ports[0], 40001)
        self.assertGreaterEqual(min(host_ports[1:]), 32768)
        self.assertEqual(len(set(host_ports)), 3)

        # Allocated ports are stable; the control API may move one after RUNNING.
        again = self.describe(arns)["tasks"]
        self.assertEqual([t["containers"][0]["networkBindings"][0]["hostPort"] for t in again], host_ports)
        self.set_tasks([arns[1]], hostPort=40002, containerPort=8080)
        moved = self.describe([arns[1]])["tasks"][0]
        self.assertEqual(moved["containers"][0]["networkBindings"][0]["hostPort"], 40002)

        # Health, per task, for the task and each container.
        self.set_tasks([arns[2]], health="UNHEALTHY")
        sick = self.describe([arns[2]])["tasks"][0]
        self.assertEqual(sick["healthStatus"], "UNHEALTHY")
        self.assertEqual({c["healthStatus"] for c in sick["containers"]}, {"UNHEALTHY"})
        self.assertEqual(self.describe([arns[0]])["tasks"][0]["healthStatus"], "HEALTHY")

    def test_host_port_set_before_running(self) -> None:
        arn = self.start(self.cis[1], "service:early")["taskArn"]
        self.set_tasks([arn], hostPort=40100)
        self.assertEqual(self.describe([arn])["tasks"][0]["containers"][0]["networkBindings"], [])
        task = self.set_tasks([arn], lastStatus="RUNNING")[0]
        self.assertEqual(task["containers"][0]["networkBindings"][0]["hostPort"], 40100)

    def test_host_network_mode_binds_container_port(self) -> None:
        self.ecs.register_task_definition(
            family="hostnet",
            networkMode="host",
            containerDefinitions=[
                {"name": "app", "image": "app:1", "memory": 16, "portMappings": [{"containerPort": 9090}]}
            ],
        )
        arn = self.start(self.cis[0], "service:hostnet", family="hostnet")["taskArn"]
        task = self.set_tasks([arn], lastStatus="RUNNING")[0]
        self.assertEqual(
            task["containers"][0]["networkBindings"],
            [{"bindIP": "0.0.0.0", "containerPort": 9090, "hostPort": 9090, "protocol": "tcp"}],
        )
        status, payload = self.emu.control("POST", "/_emulator/tasks", {"tasks": [arn], "hostPort": 1234})
        self.assertEqual(status, 400, payload)

    def test_150_dynamic_port_tasks_fit_one_instance_and_paginate(self) -> None:
        self.ecs.create_cluster(clusterName="bulk")
        ci = self._register("bulk", self._run_instance())
        ran = self.ecs.run_task(cluster="bulk", taskDefinition="api", count=150, group="service:bulk")
        self.assertEqual(len(ran["tasks"]), 150)
        self.assertEqual({t["containerInstanceArn"] for t in ran["tasks"]}, {ci})
        arns = sorted(t["taskArn"] for t in ran["tasks"])

        instance = self.ecs.describe_container_instances(cluster="bulk", containerInstances=[ci])
        ports = next(r for r in instance["containerInstances"][0]["remainingResources"] if r["name"] == "PORTS")
        self.assertNotIn("0", ports["stringSetValue"])

        first = self.ecs.list_tasks(cluster="bulk", maxResults=100)
        self.assertEqual(len(first["taskArns"]), 100)
        self.assertIn("nextToken", first)
        second = self.ecs.list_tasks(cluster="bulk", maxResults=100, nextToken=first["nextToken"])
        self.assertEqual(len(second["taskArns"]), 50)
        self.assertNotIn("nextToken", second)
        self.assertEqual(first["taskArns"] + second["taskArns"], arns)
        default_page = self.ecs.list_tasks(cluster="bulk")
        self.assertEqual(len(default_page["taskArns"]), 100)
        self.assertIn("nextToken", default_page)
        small = [self.ecs.list_tasks(cluster="bulk", maxResults=7)]
        self.assertEqual(len(small[0]["taskArns"]), 7)
        pages = list(self.ecs.get_paginator("list_tasks").paginate(cluster="bulk", PaginationConfig={"PageSize": 64}))
        self.assertEqual([len(p["taskArns"]) for p in pages], [64, 64, 22])
        self.assertEqual(self.list_all(cluster="bulk", serviceName="bulk"), arns)

        # Stopped tasks drop out of the default (RUNNING) listing.
        for arn in arns[:5]:
            self.ecs.stop_task(cluster="bulk", task=arn)
        self.assertEqual(self.list_all(cluster="bulk"), arns[5:])
        self.assertEqual(self.list_all(cluster="bulk", desiredStatus="STOPPED"), arns[:5])
        self.assertEqual(self.ecs.list_tasks(cluster="bulk", desiredStatus="PENDING")["taskArns"], [])

        for bad in (0, 101):
            with self.assertRaises(ClientError) as ctx:
                self.ecs.list_tasks(cluster="bulk", maxResults=bad)
            self.assert_code(ctx, "InvalidParameterException")
        with self.assertRaises(ClientError) as ctx:
            self.ecs.list_tasks(cluster="bulk", nextToken="not a token")
        self.assert_code(ctx, "InvalidParameterException")
        with self.assertRaises(ClientError) as ctx:
            self.ecs.list_tasks(cluster="nope")
        self.assert_code(ctx, "ClusterNotFoundException")

    def test_list_tasks_filters(self) -> None:
        self.ecs.create_cluster(clusterName="filters")
        cis = [self._register("filters", iid) for iid in self.instance_ids]
        self.ecs.register_task_definition(
            family="web",
            containerDefinitions=[{"name": "web", "image": "web:1", "memory": 16,
                                   "portMappings": [{"containerPort": 80}]}],
        )
        api = [self.start(cis[0], "service:api", cluster="filters")["taskArn"] for _ in range(2)]
        web = [self.start(cis[1], "service:web", family="web", cluster="filters", startedBy="deployer")["taskArn"]]
        lone = [self.start(cis[1], "family:api", cluster="filters")["taskArn"]]

        def listed(**kw: Any) -> list[str]:
            return self.list_all(cluster="filters", **kw)

        self.assertEqual(listed(serviceName="api"), sorted(api))
        self.assertEqual(listed(serviceName="web"), web)
        self.assertEqual(listed(serviceName="none"), [])
        self.assertEqual(listed(family="api"), sorted(api + lone))
        self.assertEqual(listed(family="web"), web)
        self.assertEqual(listed(containerInstance=cis[0]), sorted(api))
        self.assertEqual(listed(containerInstance=cis[1].rsplit("/", 1)[1]), sorted(web + lone))
        self.assertEqual(listed(startedBy="deployer"), web)
        self.assertEqual(listed(launchType="EC2"), sorted(api + web + lone))
        self.assertEqual(listed(), sorted(api + web + lone))

    def test_stop_task_keeps_last_status(self) -> None:
        arn = self.start(self.cis[0], "service:stopping")["taskArn"]
        self.set_tasks([arn], lastStatus="RUNNING")
        stopped = self.ecs.stop_task(cluster="main", task=arn, reason="scaling in")["task"]
        self.assertEqual(stopped["lastStatus"], "RUNNING")
        self.assertEqual(stopped["desiredStatus"], "STOPPED")
        self.assertEqual(stopped["stoppedReason"], "scaling in")
        self.assertEqual(stopped["stopCode"], "UserInitiated")
        for _ in range(3):
            task = self.describe([arn])["tasks"][0]
            self.assertEqual((task["lastStatus"], task["desiredStatus"]), ("RUNNING", "STOPPED"))
        self.assertNotIn(arn, self.list_all(cluster="main"))
        self.assertNotIn(arn, self.list_all(cluster="main", serviceName="stopping"))
        self.assertIn(arn, self.list_all(cluster="main", desiredStatus="STOPPED"))

        task = self.set_tasks([arn], lastStatus="STOPPED")[0]
        self.assertEqual(task["lastStatus"], "STOPPED")
        self.assertIn("stoppedAt", task)
        self.assertEqual({c["lastStatus"] for c in task["containers"]}, {"STOPPED"})

        with self.assertRaises(ClientError) as ctx:
            self.ecs.stop_task(cluster="main", task="arn:aws:ecs:us-east-1:123456789012:task/main/nope")
        self.assert_code(ctx, "InvalidParameterException")

    def test_failures_control(self) -> None:
        arns = [self.start(self.cis[1], "service:flaky")["taskArn"] for _ in range(2)]
        unknown = "arn:aws:ecs:us-east-1:123456789012:task/main/0123456789abcdef0123456789abcdef"
        described = self.describe(arns + [unknown])
        self.assertEqual([t["taskArn"] for t in described["tasks"]], arns)
        self.assertEqual(described["failures"], [{"arn": unknown, "reason": "MISSING"}])

        self.emu.ok("POST", "/_emulator/failures", {"tasks": [arns[0]]})
        described = self.describe(arns)
        self.assertEqual([t["taskArn"] for t in described["tasks"]], [arns[1]])
        self.assertEqual(described["failures"], [{"arn": arns[0], "reason": "MISSING"}])

        self.emu.ok("POST", "/_emulator/failures", {"tasks": []})
        self.assertEqual(len(self.describe(arns)["tasks"]), 2)

    def test_describe_tasks_limits(self) -> None:
        arn = self.start(self.cis[0], "service:limits")["taskArn"]
        fillers = [f"arn:aws:ecs:us-east-1:123456789012:task/main/{i:032x}" for i in range(99)]
        described = self.describe([arn] + fillers)
        self.assertEqual(len(described["tasks"]), 1)
        self.assertEqual(len(described["failures"]), 99)
        with self.assertRaises(ClientError) as ctx:
            self.describe([arn] + fillers + ["one-too-many"])
        self.assert_code(ctx, "InvalidParameterException")
        # By task id too, and in the named cluster only.
        self.assertEqual(len(self.describe([arn.rsplit("/", 1)[1]])["tasks"]), 1)
        self.ecs.create_cluster(clusterName="other")
        self.assertEqual(len(self.describe([arn], cluster="other")["failures"]), 1)

    def test_throttle_control(self) -> None:
        self.emu.ok("POST", "/_emulator/calls/reset")
        self.assertEqual(self.emu.ok("POST", "/_emulator/throttle", {"count": 2}), {"count": 2})
        with self.assertRaises(ClientError) as ctx:
            self.ecs.list_tasks(cluster="main")
        self.assert_code(ctx, "ThrottlingException")
        self.assertEqual(ctx.exception.response["Error"]["Message"], "Rate exceeded")
        with self.assertRaises(ClientError) as ctx:
            self.ec2.describe_instances(InstanceIds=self.instance_ids)
        self.assert_code(ctx, "RequestLimitExceeded")
        self.ecs.list_tasks(cluster="main")
        self.ec2.describe_instances(InstanceIds=self.instance_ids)
        self.assertEqual(self.emu.ok("GET", "/_emulator/calls"), {"ListTasks": 2, "DescribeInstances": 2})

    def test_awsvpc_address_pinned_and_settable(self) -> None:
        vpc = self.ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        self.ecs.register_task_definition(
            family="vpc",
            networkMode="awsvpc",
            containerDefinitions=[{"name": "app", "image": "app:1", "memory": 16,
                                   "portMappings": [{"containerPort": 8080}]}],
        )
        ran = self.ecs.run_task(
            cluster="main", taskDefinition="vpc", count=2, group="service:vpc", launchType="EC2",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}},
        )
        arns = [t["taskArn"] for t in ran["tasks"]]
        self.assertEqual(len(arns), 2)

        def address(task: dict) -> str:
            (att,) = task["attachments"]
            self.assertEqual((att["type"], att["status"]), ("ElasticNetworkInterface", "ATTACHED"))
            details = {d["name"]: d["value"] for d in att["details"]}
            self.assertEqual(details["subnetId"], subnet)
            self.assertTrue(details["networkInterfaceId"].startswith("eni-"))
            iface = task["containers"][0]["networkInterfaces"]
            self.assertEqual(iface, [{"attachmentId": att["id"], "privateIpv4Address": details["privateIPv4Address"]}])
            return details["privateIPv4Address"]

        self.assertEqual([address(t) for t in self.describe(arns)["tasks"]], ["127.0.0.1"] * 2)
        self.set_tasks([arns[1]], privateIPv4Address="127.0.0.2", lastStatus="RUNNING")
        tasks = self.describe(arns)["tasks"]
        self.assertEqual([address(t) for t in tasks], ["127.0.0.1", "127.0.0.2"])
        self.assertEqual(tasks[1]["containers"][0]["networkBindings"], [])

        status, payload = self.emu.control("POST", "/_emulator/tasks", {"tasks": [arns[0]], "hostPort": 4000})
        self.assertEqual(status, 400, payload)
        bridge = self.start(self.cis[0], "service:bridge")["taskArn"]
        status, payload = self.emu.control(
            "POST", "/_emulator/tasks", {"tasks": [bridge], "privateIPv4Address": "127.0.0.3"}
        )
        self.assertEqual(status, 400, payload)

    def test_calls_counting(self) -> None:
        self.emu.ok("POST", "/_emulator/calls/reset")
        self.assertEqual(self.emu.ok("GET", "/_emulator/calls"), {})
        arns = self.ecs.list_tasks(cluster="main", maxResults=1)["taskArns"]
        self.ecs.list_tasks(cluster="main")
        self.describe(arns or ["missing"])
        self.ecs.describe_container_instances(cluster="main", containerInstances=self.cis)
        self.ec2.describe_instances(InstanceIds=self.instance_ids)
        self.ecs.describe_task_definition(taskDefinition="api")
        self.assertEqual(
            self.emu.ok("GET", "/_emulator/calls"),
            {"ListTasks": 2, "DescribeTasks": 1, "DescribeContainerInstances": 1,
             "DescribeInstances": 1, "DescribeTaskDefinition": 1},
        )
        self.emu.ok("POST", "/_emulator/calls/reset")
        self.assertEqual(self.emu.ok("GET", "/_emulator/calls"), {})

    def test_control_api_errors(self) -> None:
        arn = self.start(self.cis[0], "service:errors")["taskArn"]
        cases = [
            ("POST", "/_emulator/tasks", {"tasks": [arn], "lastStatus": "BOGUS"}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn], "health": "GREAT"}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn], "containerPort": 8080}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn], "hostPort": 8080, "containerPort": 9999}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn], "hostPort": 0}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn], "typo": 1}, 400),
            ("POST", "/_emulator/tasks", {"tasks": [arn, "arn:aws:ecs:us-east-1:1:task/x/y"],
                                          "lastStatus": "RUNNING"}, 400),
            ("POST", "/_emulator/tasks", {"tasks": arn}, 400),
            ("POST", "/_emulator/throttle", {"count": -1}, 400),
            ("POST", "/_emulator/failures", {}, 400),
            ("GET", "/_emulator/tasks", None, 405),
            ("GET", "/_emulator/nothing", None, 404),
        ]
        for method, path, body, want in cases:
            status, payload = self.emu.control(method, path, body)
            self.assertEqual(status, want, (method, path, body, payload))
            self.assertIsInstance(payload.get("error"), str)
        # Nothing was applied by the refused requests.
        self.assertEqual(self.describe([arn])["tasks"][0]["lastStatus"], "PENDING")
        req = urllib.request.Request(self.emu.url + "/_emulator/tasks", data=b"{not json", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as ctx:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(ctx.exception.code, 400)

    def test_concurrent_requests(self) -> None:
        errors: list[BaseException] = []
        config = Config(retries={"total_max_attempts": 1})

        def worker() -> None:
            try:
                ecs = boto3.session.Session().client("ecs", endpoint_url=self.emu.url, config=config)
                ec2 = boto3.session.Session().client("ec2", endpoint_url=self.emu.url, config=config)
                for _ in range(5):
                    arns = ecs.list_tasks(cluster="main")["taskArns"]
                    if arns:
                        ecs.describe_tasks(cluster="main", tasks=arns[:100])
                    ec2.describe_instances(InstanceIds=self.instance_ids)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        self.assertEqual(errors, [])


class ResetAndSigintTest(unittest.TestCase):
    """A second emulator: /_emulator/reset wipes everything; SIGINT exits cleanly."""

    def test_reset_then_sigint(self) -> None:
        os.environ.update(ENV)
        emu = Emulator()
        try:
            ecs = boto3.client("ecs", endpoint_url=emu.url, config=Config(retries={"total_max_attempts": 1}))
            ecs.create_cluster(clusterName="gone")
            emu.ok("POST", "/_emulator/throttle", {"count": 5})
            emu.ok("POST", "/_emulator/failures", {"tasks": ["arn:aws:ecs:us-east-1:123456789012:task/gone/x"]})
            self.assertEqual(emu.ok("POST", "/_emulator/reset"), {})
            self.assertEqual(emu.ok("GET", "/_emulator/calls"), {})
            self.assertEqual(ecs.list_clusters()["clusterArns"], [])  # not throttled, cluster gone
        finally:
            code = emu.stop(signal.SIGINT)
        self.assertEqual(code, 0, "".join(emu.stderr))


if __name__ == "__main__":
    unittest.main()
