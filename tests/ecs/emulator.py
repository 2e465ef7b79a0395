"""ECS + EC2 API emulator for seawall's ECS discovery tests: moto's server, patched.

Seawall's ECS discovery follows an ECS service's running tasks through
ListTasks, DescribeTasks, DescribeContainerInstances, EC2 DescribeInstances
and DescribeTaskDefinition. Its integration tests point the AWS SDK at this
process instead of AWS. Stock moto 5.2 gets several things wrong for that
(tasks advance on their own, bridge tasks get no port bindings, ListTasks
ignores serviceName and does not paginate, ...), so this launcher monkeypatches
moto's ECS models in-process (nothing in site-packages is edited), then serves
moto's whole server app plus a small control API on one host:port.

Setup and run
-------------
    tests/ecs/setup.sh          # venv at ${SEAWALL_ECS_VENV:-<repo>/target/ecs-venv}
    <venv>/bin/python tests/ecs/emulator.py [--host 127.0.0.1] [--port 0] [--verbose]

Port 0 binds an ephemeral port. Once bound, the process prints exactly one line
to stdout, ``listening on HOST:PORT``, flushes, and from then on writes nothing
more to stdout (anything moto prints goes to stderr). It serves until SIGTERM or
SIGINT (exit status 0), or until its parent process dies (so a crashed test run
leaves no emulator behind). ``--verbose`` logs every request to stderr.

Point the SDK at ``http://HOST:PORT/`` with any credentials (e.g. test/test) and
region us-east-1. Requests are routed by their SigV4 credential scope: ECS
(JSON, ``X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Action>``) and EC2
(query protocol, ``Action=<Action>`` form body) share the one port. The server
is threaded (concurrent connections are accepted); requests are applied to
moto's models one at a time under a single lock. Every response carries
``Connection: close`` (werkzeug's server never keeps connections alive), so
clients open a connection per request. Account is 123456789012.

Behaviour that differs from stock moto 5.2 (one section per patch below)
------------------------------------------------------------------------
* Tasks do not progress on their own: run_task/start_task create tasks with
  lastStatus PENDING, desiredStatus RUNNING, and only the control API moves
  lastStatus (DescribeTasks no longer advances them).
* Every container definition of the task definition is a container of the
  task: name, containerArn, taskArn, image, lastStatus (the task's),
  healthStatus, networkBindings, networkInterfaces (awsvpc), cpu, memory.
* networkBindings, once the task's lastStatus has been RUNNING (they stay
  afterwards): for each portMappings entry with a containerPort,
  ``{"bindIP": "0.0.0.0", "containerPort": C, "hostPort": H, "protocol": P}``
  with P the mapping's protocol (default "tcp"). bridge (the default mode):
  H = the mapping's hostPort if non-zero, else the port set through the
  control API, else one allocated from a single emulator-wide counter that
  starts at 32768 (so it is unique per container instance and, since every
  instance is 127.0.0.1 in tests, unique on the machine); allocated once per
  task/container/port and then stable. host: H = hostPort or containerPort.
  awsvpc and none: no bindings (``[]``); awsvpc tasks carry the address in
  their ENI attachment instead.
* portMappings with hostPort 0 (or none) reserve no port on the container
  instance, so any number of dynamic-port tasks fit on one instance (a missing
  container memory counts as 0 instead of crashing placement).
* StopTask sets desiredStatus STOPPED, stoppedReason (the given reason, else
  "Task stopped by user"), stopCode UserInitiated and stoppingAt, and leaves
  lastStatus as it was. The control API later sets lastStatus STOPPED, which
  releases the task's resources on its container instance. An unknown task is
  an InvalidParameterException instead of a 500.
* ListTasks: filters cluster, containerInstance (ARN or id), family,
  startedBy, serviceName (matches tasks whose group is "service:NAME"),
  launchType and desiredStatus (default RUNNING, as real ECS). Results are
  sorted by task ARN and paginated: maxResults 1..100 (default 100), nextToken
  opaque (base64 of the last ARN returned; stable when tasks come and go),
  nextToken present only while more remain.
* Task and container healthStatus default to HEALTHY; settable per task.
* DescribeTasks looks tasks up in the requested cluster only, by ARN or id,
  in request order without duplicates. Unknown tasks and tasks on the
  control API's failure list come back in ``failures`` as
  ``{"arn": <as requested>, "reason": "MISSING"}``. More than 100 tasks, or
  none, is an InvalidParameterException, as in real ECS.
* awsvpc tasks: the ENI attachment is ``{"id", "type": "ElasticNetworkInterface",
  "status": "ATTACHED", "details": [subnetId, networkInterfaceId, macAddress,
  privateDnsName, privateIPv4Address]}`` with privateIPv4Address 127.0.0.1 by
  default (stock: a random 10.x address), settable per task; containers list
  it in networkInterfaces. networkConfiguration.awsvpcConfiguration.
  securityGroups may be omitted. (Stock moto 5.2.5 answers 500 to any awsvpc
  RunTask in a VPC made by CreateVpc; fixed.) StartTask ignores
  networkConfiguration in moto, so start awsvpc tasks with RunTask.
* Tasks also carry createdAt, startedAt (first RUNNING), stoppingAt,
  stoppedAt, executionStoppedAt, version, cpu/memory (from the task
  definition) and launchType EC2 for tasks on container instances (stock
  sends launchType "").
* EC2: run_instances(PrivateIpAddress="127.0.0.1") without SubnetId keeps
  that address in DescribeInstances, and DescribeContainerInstances returns
  ec2InstanceId: both work in stock moto 5.2.5 (checked by the self-test), so
  nothing is patched there.

Control API (JSON over HTTP on the same port; answered before moto's dispatch)
-----------------------------------------------------------------------------
Bad input answers 400 ``{"error": "..."}``; an unknown /_emulator/ path 404
``{"error": "..."}``; a known path with the wrong method 405.

``POST /_emulator/tasks``
    body ``{"tasks": [ARN, ...], "lastStatus"?: str, "desiredStatus"?: str,
    "health"?: "HEALTHY"|"UNHEALTHY"|"UNKNOWN", "hostPort"?: int,
    "containerPort"?: int, "container"?: str, "privateIPv4Address"?: str}``.
    Applies the given fields to every listed task, whatever its cluster
    (all-or-nothing: an unknown ARN or bad field changes nothing).
    lastStatus: one of PROVISIONING PENDING ACTIVATING RUNNING DEACTIVATING
    STOPPING DEPROVISIONING STOPPED; STOPPED also sets desiredStatus STOPPED
    unless desiredStatus is given. desiredStatus: RUNNING PENDING STOPPED.
    health: sets the task's and every container's healthStatus.
    hostPort (1..65535): the host port of the task's dynamic (hostPort 0)
    binding for containerPort (default: the first port mapping of the first
    container that has any); "container" (extension) names the container
    when several map the same containerPort. May be set before or after
    RUNNING; a mapping with a fixed hostPort, or a task that is not in bridge
    mode, is a 400. containerPort without hostPort is a 400.
    privateIPv4Address: the address in the task's ENI attachment (awsvpc
    tasks only; else 400). Returns ``{"tasks": [<task as DescribeTasks shows
    it>, ...]}`` in request order.
``POST /_emulator/failures``
    body ``{"tasks": [ARN, ...]}``: from now on DescribeTasks reports these
    tasks as failures (reason MISSING) instead of returning them. Replaces the
    previous list; ``[]`` clears it. Returns ``{"tasks": [...]}``.
``POST /_emulator/throttle``
    body ``{"count": N}``: the next N ECS/EC2 API requests are refused with
    HTTP 400: ECS (JSON protocol) ``{"__type": "ThrottlingException",
    "message": "Rate exceeded"}``, EC2 (query protocol) the EC2 XML error
    ``<Response><Errors><Error><Code>RequestLimitExceeded</Code>...``.
    Replaces any remaining count; 0 clears. Throttled requests are counted in
    /_emulator/calls too. Returns ``{"count": N}``.
``GET /_emulator/calls``
    ``{"ListTasks": n, "DescribeTasks": n, ...}``: API requests per action
    name (ECS from X-Amz-Target, EC2 from the Action parameter) since start or
    the last reset; actions never called are absent.
``POST /_emulator/calls/reset``
    zeroes the counts. Returns ``{}``.
``POST /_emulator/reset`` (extension)
    resets all of moto's state (every backend) and the emulator's: counts,
    throttle, failure list, port counter. Returns ``{}``.
``GET /_emulator/health``
    200, body ``ok`` (text/plain).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import copy
import inspect
import io
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable
from urllib.parse import parse_qs

try:
    from moto.core.responses import ActionResult
    from moto.core.serialize import (
        XFormedAttributePicker,
        get_serializer_class,
        never_return,
    )
    from moto.core.utils import get_service_model, utcnow
    from moto.ec2 import ec2_backends
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs import models as ecs_models
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends
    from moto.ecs.responses import DESCRIBE_TASKS_TAGS, EC2ContainerServiceResponse
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.exit(
        f"emulator.py: cannot import moto ({e}); run tests/ecs/setup.sh and use "
        "the python of the virtualenv it creates"
    )

EMULATOR_IP = "127.0.0.1"
FIRST_DYNAMIC_PORT = 32768
MAX_DESCRIBE_TASKS = 100
MAX_LIST_RESULTS = 100

TASK_LAST_STATUSES = (
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
)
TASK_DESIRED_STATUSES = ("RUNNING", "PENDING", "STOPPED")
HEALTH_STATUSES = ("HEALTHY", "UNHEALTHY", "UNKNOWN")


class EmulatorState:
    """State of the emulator itself (not of moto's models), behind one lock.

    The lock is also held while moto handles a request, so moto's models are
    only ever touched by one thread at a time.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.throttle = 0
        self.failures: set[str] = set()  # task ids
        self.next_port = FIRST_DYNAMIC_PORT
        self.used_ports: set[int] = set()

    def allocate_port(self) -> int:
        while self.next_port in self.used_ports:
            self.next_port += 1
        port = self.next_port
        self.used_ports.add(port)
        self.next_port += 1
        return port


STATE = EmulatorState()


def _task_id(arn_or_id: str) -> str:
    return arn_or_id.rsplit("/", 1)[-1]


def _iter_ecs_backends() -> list[EC2ContainerServiceBackend]:
    out = []
    for _account, regions in list(ecs_backends.items()):
        for _region, backend in list(regions.items()):
            out.append(backend)
    return out


class TaskExtras:
    """What the emulator tracks per task beyond moto's Task (as ``task._emu``)."""

    def __init__(self, network_mode: str | None) -> None:
        self.network_mode = network_mode or "bridge"
        self.health = "HEALTHY"
        self.ever_running = False
        self.released = False
        # (container name, container port) -> host port of a dynamic binding
        self.ports: dict[tuple[str, int], int] = {}


# ---------------------------------------------------------------------------
# Patch: task lifecycle is frozen until the control API moves it.
#
# Real ECS: a new task is PENDING (desiredStatus RUNNING) until the agent has
# pulled and started its containers, then RUNNING; after StopTask it stays
# RUNNING (desiredStatus STOPPED) while the containers shut down, then goes
# STOPPED. Stock moto starts tasks at RUNNING and its state manager walks
# lastStatus one step towards STOPPED on every DescribeTasks, so a discovery
# loop that polls would watch its targets die. Here lastStatus is a plain
# attribute that only run_task (PENDING) and the control API set; the state
# manager is bypassed for tasks.
# ---------------------------------------------------------------------------
def _task_last_status_get(self: Task) -> str:
    return self._status


def _task_last_status_set(self: Task, value: str) -> None:
    self._status = value


Task.status = property(_task_last_status_get, _task_last_status_set)
Task.last_status = property(_task_last_status_get, _task_last_status_set)
Task.advance = lambda self: None


# ---------------------------------------------------------------------------
# Patch: every container definition is a container of the task, with health
# and network bindings.
#
# Real ECS: DescribeTasks lists one container per container definition, each
# with its own containerArn (arn:...:container/CLUSTER/TASK_ID/UUID), the
# task's ARN, lastStatus, healthStatus and networkBindings (bridge/host mode).
# Stock moto models only the first container definition, gives it the task
# definition's ARN as taskArn and never any networkBindings.
# ---------------------------------------------------------------------------
class EmuContainer:
    """A task's container as DescribeTasks shows it (read by moto's serializer)."""

    def __init__(self, task: Task, container_def: dict[str, Any]) -> None:
        self._task = task
        self._def = container_def
        cluster_part = task.cluster_arn.split(":cluster/", 1)[-1]
        self.container_arn = (
            task.cluster_arn.split(":cluster/", 1)[0]
            + f":container/{cluster_part}/{task.id}/{uuid.uuid4()}"
        )
        self.name = container_def.get("name")
        self.image = container_def.get("image")
        self.cpu = str(container_def.get("cpu") or 0)
        memory = container_def.get("memory")
        self.memory = None if memory is None else str(memory)
        reservation = container_def.get("memoryReservation")
        self.memory_reservation = None if reservation is None else str(reservation)

    @property
    def task_arn(self) -> str:
        return self._task.task_arn

    @property
    def last_status(self) -> str:
        return self._task.last_status

    @property
    def health_status(self) -> str:
        return self._task._emu.health

    @property
    def exit_code(self) -> int | None:
        return 0 if self._task.last_status == "STOPPED" else None

    @property
    def network_bindings(self) -> list[dict[str, Any]]:
        return _network_bindings(self._task, self)

    @property
    def network_interfaces(self) -> list[dict[str, Any]]:
        att = _eni_attachment(self._task)
        if att is None:
            return []
        return [
            {
                "attachmentId": att["id"],
                "privateIpv4Address": _attachment_detail(att, "privateIPv4Address"),
            }
        ]

    def port_mappings(self) -> list[dict[str, Any]]:
        return [
            pm
            for pm in (self._def.get("portMappings") or [])
            if pm.get("containerPort") is not None
        ]


# ---------------------------------------------------------------------------
# Patch: networkBindings.
#
# Real ECS: once a container runs, each port mapping has a binding. bridge
# mode with hostPort 0 (or none) gets a dynamic host port from the instance's
# ephemeral range; host mode binds the container port itself; awsvpc binds
# on the task's ENI (the address is in the attachment). Stock moto reports no
# bindings at all. See the module docstring for the exact rule.
# ---------------------------------------------------------------------------
def _network_bindings(task: Task, container: EmuContainer) -> list[dict[str, Any]]:
    extras: TaskExtras = task._emu
    if not extras.ever_running or extras.network_mode not in ("bridge", "host"):
        return []
    bindings = []
    for pm in container.port_mappings():
        container_port = int(pm["containerPort"])
        fixed = int(pm.get("hostPort") or 0)
        if extras.network_mode == "host":
            host_port = fixed or container_port
        elif fixed:
            host_port = fixed
        else:
            key = (container.name, container_port)
            if key not in extras.ports:
                with STATE.lock:
                    extras.ports[key] = STATE.allocate_port()
            host_port = extras.ports[key]
        bindings.append(
            {
                "bindIP": "0.0.0.0",
                "containerPort": container_port,
                "hostPort": host_port,
                "protocol": str(pm.get("protocol") or "tcp").lower(),
            }
        )
    return bindings


# ---------------------------------------------------------------------------
# Patch: task construction (containers, health, timestamps, awsvpc details).
# ---------------------------------------------------------------------------
_ORIG_TASK_INIT = Task.__init__
_TASK_INIT_SIGNATURE = inspect.signature(_ORIG_TASK_INIT)


def _task_init(self: Task, *args: Any, **kwargs: Any) -> None:
    bound = _TASK_INIT_SIGNATURE.bind(self, *args, **kwargs)
    bound.apply_defaults()
    arguments = bound.arguments
    task_definition = arguments["task_definition"]

    # awsvpc: real ECS defaults securityGroups to the VPC's default group;
    # stock moto raises KeyError without it.
    net = arguments.get("networking_configuration")
    if net and "awsvpcConfiguration" in net:
        net = copy.deepcopy(net)
        net["awsvpcConfiguration"].setdefault("securityGroups", [])
        arguments["networking_configuration"] = net

    # Real ECS reports launchType EC2 for tasks on container instances; stock
    # moto sends "" when run_task/start_task got no launchType.
    if not arguments.get("launch_type") and arguments.get("container_instance_arn"):
        arguments["launch_type"] = "EC2"

    _ORIG_TASK_INIT(*bound.args, **bound.kwargs)

    self._emu = TaskExtras(task_definition.network_mode)
    self._status = "PENDING"
    self.containers = [EmuContainer(self, d) for d in task_definition.container_definitions]
    self.created_at = utcnow()
    self.started_at = None
    self.stopping_at = None
    self.stopped_at = None
    self.execution_stopped_at = None
    self.stopped_reason = None
    self.stop_code = None
    self.version = 1
    # Real ECS omits startedBy when nothing set it; stock moto sends "".
    self.started_by = self.started_by or None
    self.cpu = None if task_definition.cpu is None else str(task_definition.cpu)
    self.memory = None if task_definition.memory is None else str(task_definition.memory)
    attachment = _eni_attachment(self)
    if attachment is not None:
        _set_task_address(self, _attachment_detail(attachment, "privateIPv4Address") or EMULATOR_IP)


Task.__init__ = _task_init
Task.health_status = property(lambda self: self._emu.health)


# ---------------------------------------------------------------------------
# Patch: awsvpc ENI address pinned to 127.0.0.1.
#
# Real ECS: an awsvpc task gets an ENI in one of the given subnets; its
# address is in the task's ElasticNetworkInterface attachment
# (details[name=privateIPv4Address]). Stock moto gives the ENI a random 10.x
# address, which tests cannot connect to. moto's ECS module creates the ENI
# with random_private_ip(); that name is rebound for the ECS module only.
# ---------------------------------------------------------------------------
ecs_models.random_private_ip = lambda *args, **kwargs: EMULATOR_IP

# Stock moto also crashes (AttributeError, HTTP 500) on every awsvpc task in a
# VPC without DNS hostnames (any VPC made by CreateVpc): the ENI then has no
# private_dns_name. A class-level default lets Task.__init__ through (EC2's
# own output is unchanged: None is omitted like a missing attribute); the
# task's attachment gets the name real ECS would show (ip-A-B-C-D.ec2.internal).
NetworkInterface.private_dns_name = None


def _private_dns_name(ip: str) -> str:
    return "ip-" + ip.replace(".", "-") + ".ec2.internal"


def _eni_attachment(task: Task) -> dict[str, Any] | None:
    for att in task.attachments:
        if att.get("type") == "ElasticNetworkInterface":
            return att
    return None


def _attachment_detail(att: dict[str, Any], name: str) -> str | None:
    for detail in att.get("details", []):
        if detail.get("name") == name:
            return detail.get("value")
    return None


def _set_task_address(task: Task, ip: str) -> None:
    att = _eni_attachment(task)
    assert att is not None
    dns = _private_dns_name(ip)
    eni_id = None
    for detail in att["details"]:
        if detail["name"] == "privateIPv4Address":
            detail["value"] = ip
        elif detail["name"] == "privateDnsName":
            detail["value"] = dns
        elif detail["name"] == "networkInterfaceId":
            eni_id = detail["value"]
    # Keep EC2's view of the ENI in line (best effort).
    try:
        eni = ec2_backends[task._account_id][task.region_name].get_network_interface(eni_id)
        eni.private_ip_address = ip
        eni.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": ip}]
    except Exception:  # noqa: BLE001 - the attachment is what ECS clients read
        pass


# ---------------------------------------------------------------------------
# Patch: hostPort 0 reserves nothing on the container instance.
#
# Real ECS: hostPort 0 (or omitted) in bridge mode means "pick a dynamic
# port", so it reserves no fixed port and many such tasks share an instance.
# Stock moto reserves the string "0" in the instance's PORTS set, so only one
# task with a dynamic port fits per instance (run_task silently places fewer).
# ---------------------------------------------------------------------------
def _task_resource_requirements(task_definition: Any) -> dict[str, Any]:
    requirements: dict[str, Any] = {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
    for cdef in task_definition.container_definitions:
        requirements["CPU"] += int(cdef.get("cpu", cdef.get("Cpu", 0)) or 0)
        memory = None
        for key in ("memory", "Memory", "memoryReservation", "MemoryReservation"):
            if cdef.get(key) is not None:
                memory = cdef[key]
                break
        requirements["MEMORY"] += int(memory or 0)
        for pm in cdef.get("portMappings", cdef.get("PortMappings")) or []:
            host_port = pm.get("hostPort", pm.get("HostPort"))
            if host_port:  # 0 / None: dynamic, nothing reserved up front
                requirements["PORTS"].append(int(host_port))
    return requirements


EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(
    _task_resource_requirements
)


def _release_task_resources(task: Task) -> None:
    """Give a stopped task's CPU/memory/ports back to its container instance (once)."""
    extras: TaskExtras = task._emu
    if extras.released or not task.container_instance_arn:
        return
    extras.released = True
    backend = task._backend
    instance = backend.container_instances.get(task.cluster_name, {}).get(
        _task_id(task.container_instance_arn)
    )
    if instance is not None and task.resource_requirements:
        backend.update_container_instance_resources(
            instance, task.resource_requirements, removing=True
        )
    cluster = backend.clusters.get(task.cluster_name)
    if cluster is not None and cluster.running_tasks_count > 0:
        cluster.running_tasks_count -= 1


# ---------------------------------------------------------------------------
# Patch: StopTask only asks the task to stop.
#
# Real ECS: StopTask sets desiredStatus STOPPED (stopCode UserInitiated,
# stoppedReason, stoppingAt) and returns the task still RUNNING; lastStatus
# reaches STOPPED later, when the containers have exited. Stock moto jumps
# straight to lastStatus STOPPED and raises a bare Exception (HTTP 500) for an
# unknown task.
# ---------------------------------------------------------------------------
def _find_task_in_cluster(backend: EC2ContainerServiceBackend, cluster_name: str, ref: str) -> Task | None:
    tasks = backend.tasks.get(cluster_name, {})
    if ref in tasks:
        return tasks[ref]
    wanted = _task_id(ref)
    for task in tasks.values():
        if task.id == wanted:
            return task
    return None


def _stop_task(self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str | None) -> Task:
    cluster = self._get_cluster(cluster_str)
    task = _find_task_in_cluster(self, cluster.name, task_str or "")
    if task is None:
        raise InvalidParameterException("The referenced task was not found.")
    if task.desired_status != "STOPPED":
        task.desired_status = "STOPPED"
        task.stopped_reason = reason or "Task stopped by user"
        task.stop_code = "UserInitiated"
        task.stopping_at = utcnow()
        task.version += 1
    return task


EC2ContainerServiceBackend.stop_task = _stop_task


# ---------------------------------------------------------------------------
# Patch: ListTasks filters and pagination.
#
# Real ECS: desiredStatus defaults to RUNNING (stopped tasks are listed only
# when asked for); serviceName lists the service's tasks (their group is
# "service:NAME"); results come in pages of maxResults (1..100, default 100)
# with a nextToken while more remain. Stock moto ignores serviceName, lists
# stopped tasks by default and never paginates.
# ---------------------------------------------------------------------------
def _encode_token(last_arn: str) -> str:
    raw = json.dumps({"after": last_arn}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidParameterException("Invalid nextToken.") from None
    if not isinstance(after, str):
        raise InvalidParameterException("Invalid nextToken.")
    return after


def _family_of(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def _list_tasks_response(self: EC2ContainerServiceResponse) -> ActionResult:
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster") or "default")
    container_instance = self._get_param("containerInstance")
    family = self._get_param("family")
    started_by = self._get_param("startedBy")
    service_name = self._get_param("serviceName")
    launch_type = self._get_param("launchType")
    desired_status = self._get_param("desiredStatus") or "RUNNING"
    max_results = self._get_param("maxResults")
    next_token = self._get_param("nextToken")

    if desired_status not in TASK_DESIRED_STATUSES:
        raise InvalidParameterException(
            f"desiredStatus must be one of {', '.join(TASK_DESIRED_STATUSES)}."
        )
    if max_results is None:
        max_results = MAX_LIST_RESULTS
    elif not isinstance(max_results, int) or not 1 <= max_results <= MAX_LIST_RESULTS:
        raise InvalidParameterException(
            f"maxResults must be between 1 and {MAX_LIST_RESULTS}."
        )

    tasks = list(backend.tasks.get(cluster.name, {}).values())
    tasks = [t for t in tasks if t.desired_status == desired_status]
    if container_instance:
        wanted = _task_id(container_instance)
        tasks = [
            t
            for t in tasks
            if t.container_instance_arn and _task_id(t.container_instance_arn) == wanted
        ]
    if family:
        tasks = [t for t in tasks if _family_of(t.task_definition_arn) == family]
    if started_by:
        tasks = [t for t in tasks if t.started_by == started_by]
    if service_name:
        group = "service:" + service_name.rsplit("/", 1)[-1]
        tasks = [t for t in tasks if t.group == group]
    if launch_type:
        tasks = [t for t in tasks if t.launch_type == launch_type]

    tasks.sort(key=lambda t: t.task_arn)
    if next_token:
        after = _decode_token(next_token)
        tasks = [t for t in tasks if t.task_arn > after]
    page = tasks[:max_results]
    result: dict[str, Any] = {"taskArns": [t.task_arn for t in page]}
    if len(tasks) > len(page):
        result["nextToken"] = _encode_token(page[-1].task_arn)
    return ActionResult(result)


EC2ContainerServiceResponse.list_tasks = _list_tasks_response


# ---------------------------------------------------------------------------
# Patch: DescribeTasks failures, lookup and size limit.
#
# Real ECS: DescribeTasks takes 1..100 tasks of one cluster; any it cannot
# find come back in failures as {"arn", "reason": "MISSING"}; it has no side
# effects. Stock moto searches every cluster by substring, drops unknown
# tasks silently (failures always []), accepts any number, and advances each
# task's state. Tests also need a task that exists to look MISSING (the
# control API's failure list), as happens when ECS drops a stopped task.
# ---------------------------------------------------------------------------
def _describe_tasks_response(self: EC2ContainerServiceResponse) -> ActionResult:
    backend = self.ecs_backend
    cluster = backend._get_cluster(self._get_param("cluster") or "default")
    refs = self._get_param("tasks") or []
    if not refs:
        raise InvalidParameterException("Tasks cannot be empty.")
    if len(refs) > MAX_DESCRIBE_TASKS:
        raise InvalidParameterException(
            f"Tasks cannot contain more than {MAX_DESCRIBE_TASKS} elements."
        )
    include = self._get_param("include") or []
    if "TAGS" in include:
        self._include_in_response(DESCRIBE_TASKS_TAGS)
    else:
        self._exclude_from_response(DESCRIBE_TASKS_TAGS)

    found: list[Task] = []
    failures: list[dict[str, str]] = []
    seen: set[str] = set()
    for ref in refs:
        if ref in seen:
            continue
        seen.add(ref)
        task = _find_task_in_cluster(backend, cluster.name, ref)
        if task is None or task.id in STATE.failures:
            failures.append({"arn": ref, "reason": "MISSING"})
        elif task not in found:  # the same task named by ARN and by id
            found.append(task)
    return ActionResult({"tasks": found, "failures": failures})


EC2ContainerServiceResponse.describe_tasks = _describe_tasks_response


# ---------------------------------------------------------------------------
# EC2: nothing to patch.
#
# Real EC2 keeps the PrivateIpAddress given to RunInstances, and ECS's
# DescribeContainerInstances names the instance (ec2InstanceId) given in the
# instance identity document at RegisterContainerInstance. Stock moto 5.2.5
# does both (even for 127.0.0.1 without a SubnetId: the instance lands in a
# default subnet with that address); the self-test checks it.
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Serializing tasks for the control API exactly as DescribeTasks does.
# ---------------------------------------------------------------------------
def _describe_tasks_json(tasks: list[Task]) -> list[dict[str, Any]]:
    service_model = get_service_model("ecs")
    operation = service_model.operation_model("DescribeTasks")
    serializer_cls = get_serializer_class(service_model.service_name, service_model.protocol)
    serializer = serializer_cls(
        operation_model=operation,
        value_picker=XFormedAttributePicker(
            response_transformers={DESCRIBE_TASKS_TAGS: never_return}
        ),
    )
    serialized = serializer.serialize({"tasks": tasks, "failures": []})
    return json.loads(serialized["body"])["tasks"]


# ---------------------------------------------------------------------------
# Control API
# ---------------------------------------------------------------------------
class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _find_task_anywhere(ref: str) -> Task | None:
    wanted = _task_id(ref)
    for backend in _iter_ecs_backends():
        for tasks in backend.tasks.values():
            if ref in tasks:
                return tasks[ref]
            for task in tasks.values():
                if task.id == wanted:
                    return task
    return None


def _string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ControlError(f'"{key}" must be a list of strings')
    return value


def _check_keys(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(unknown)}")


def _int_field(body: dict[str, Any], key: str, lo: int, hi: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ControlError(f'"{key}" must be an integer in {lo}..{hi}')
    return value


def _choice_field(body: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if value not in choices:
        raise ControlError(f'"{key}" must be one of {", ".join(choices)}')
    return value


def _dynamic_mapping_target(
    task: Task, container_port: int | None, container_name: str | None
) -> tuple[str, int]:
    """The (container name, container port) whose dynamic host port the control API sets."""
    extras: TaskExtras = task._emu
    if extras.network_mode != "bridge":
        raise ControlError(
            f"task {task.task_arn} is in {extras.network_mode} network mode; "
            "only bridge-mode tasks have dynamic host ports"
        )
    for container in task.containers:
        if container_name is not None and container.name != container_name:
            continue
        for pm in container.port_mappings():
            if container_port is not None and int(pm["containerPort"]) != container_port:
                continue
            if pm.get("hostPort"):
                raise ControlError(
                    f"container {container.name} of task {task.task_arn} maps "
                    f"containerPort {pm['containerPort']} to fixed hostPort {pm['hostPort']}"
                )
            return container.name, int(pm["containerPort"])
    what = "any port mapping" if container_port is None else f"containerPort {container_port}"
    where = f"container {container_name}" if container_name is not None else "any container"
    raise ControlError(f"{where} of task {task.task_arn} has no {what}")


def control_tasks(body: dict[str, Any]) -> dict[str, Any]:
    _check_keys(
        body,
        {
            "tasks",
            "lastStatus",
            "desiredStatus",
            "health",
            "hostPort",
            "containerPort",
            "container",
            "privateIPv4Address",
        },
    )
    refs = _string_list(body, "tasks")
    last_status = _choice_field(body, "lastStatus", TASK_LAST_STATUSES)
    desired_status = _choice_field(body, "desiredStatus", TASK_DESIRED_STATUSES)
    health = _choice_field(body, "health", HEALTH_STATUSES)
    host_port = _int_field(body, "hostPort", 1, 65535)
    container_port = _int_field(body, "containerPort", 1, 65535)
    container_name = body.get("container")
    if container_name is not None and not isinstance(container_name, str):
        raise ControlError('"container" must be a string')
    if host_port is None and (container_port is not None or container_name is not None):
        raise ControlError('"containerPort" and "container" need "hostPort"')
    ip = body.get("privateIPv4Address")
    if ip is not None:
        try:
            ip = str(ipaddress.IPv4Address(ip))
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise ControlError('"privateIPv4Address" must be an IPv4 address') from None

    tasks = []
    missing = []
    for ref in refs:
        task = _find_task_anywhere(ref)
        if task is None:
            missing.append(ref)
        else:
            tasks.append(task)
    if missing:
        raise ControlError(f"unknown task(s): {', '.join(missing)}")

    # Validate everything before changing anything.
    port_targets = {}
    for task in tasks:
        if host_port is not None:
            port_targets[id(task)] = _dynamic_mapping_target(task, container_port, container_name)
        if ip is not None and _eni_attachment(task) is None:
            raise ControlError(
                f"task {task.task_arn} has no ElasticNetworkInterface attachment "
                f"(network mode {task._emu.network_mode}); privateIPv4Address needs awsvpc"
            )

    now = utcnow()
    for task in tasks:
        extras: TaskExtras = task._emu
        if host_port is not None:
            extras.ports[port_targets[id(task)]] = host_port
            STATE.used_ports.add(host_port)
        if health is not None:
            extras.health = health
        if ip is not None:
            _set_task_address(task, ip)
        if desired_status is not None:
            task.desired_status = desired_status
        if last_status is not None:
            task.last_status = last_status
            if last_status == "RUNNING":
                extras.ever_running = True
                task.started_at = task.started_at or now
            if last_status in ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED"):
                task.stopping_at = task.stopping_at or now
            if last_status == "STOPPED":
                if desired_status is None:
                    task.desired_status = "STOPPED"
                task.execution_stopped_at = task.execution_stopped_at or now
                task.stopped_at = task.stopped_at or now
                _release_task_resources(task)
        task.version += 1
    return {"tasks": _describe_tasks_json(tasks)}


def control_failures(body: dict[str, Any]) -> dict[str, Any]:
    _check_keys(body, {"tasks"})
    refs = _string_list(body, "tasks")
    STATE.failures = {_task_id(r) for r in refs}
    return {"tasks": refs}


def control_throttle(body: dict[str, Any]) -> dict[str, Any]:
    _check_keys(body, {"count"})
    count = _int_field(body, "count", 0, 1_000_000)
    if count is None:
        raise ControlError('"count" is required')
    STATE.throttle = count
    return {"count": count}


def control_calls(_body: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(STATE.calls.items()))


def control_calls_reset(_body: dict[str, Any]) -> dict[str, Any]:
    STATE.calls.clear()
    return {}


def control_reset(_body: dict[str, Any]) -> dict[str, Any]:
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    STATE.reset()
    return {}


CONTROL_ROUTES: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "/_emulator/tasks": ("POST", control_tasks),
    "/_emulator/failures": ("POST", control_failures),
    "/_emulator/throttle": ("POST", control_throttle),
    "/_emulator/calls": ("GET", control_calls),
    "/_emulator/calls/reset": ("POST", control_calls_reset),
    "/_emulator/reset": ("POST", control_reset),
    "/_emulator/health": ("GET", lambda _body: "ok"),
}


# ---------------------------------------------------------------------------
# WSGI middleware: control API, call counting, throttling, serialization.
# ---------------------------------------------------------------------------
def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back so moto can read it again."""
    length = environ.get("CONTENT_LENGTH")
    stream = environ["wsgi.input"]
    if length:
        try:
            body = stream.read(int(length))
        except ValueError:
            body = b""
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _credential_service(environ: dict[str, Any]) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        return scope.split("/")[3].lower()
    except IndexError:
        return None


def _identify(environ: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(action, service, protocol) of an AWS API request; protocol json or query."""
    service = _credential_service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, action = target.rpartition(".")
        if service is None and prefix.startswith("AmazonEC2ContainerService"):
            service = "ecs"
        return action or None, service, "json"
    action = None
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        action = query["Action"][0]
    elif environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"))
        if "Action" in form:
            action = form["Action"][0]
    return action, service, "query"


def _throttle_response(protocol: str, start_response: Any) -> list[bytes]:
    request_id = str(uuid.uuid4())
    if protocol == "query":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
            "<Message>Request limit exceeded.</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        ).encode()
        content_type = "text/xml;charset=UTF-8"
    else:
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        content_type = "application/x-amz-json-1.1"
    start_response(
        "400 Bad Request",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", request_id),
        ],
    )
    return [body]


def _json_response(start_response: Any, status: int, payload: Any) -> list[bytes]:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
    if isinstance(payload, str):
        body = payload.encode()
        content_type = "text/plain; charset=utf-8"
    else:
        body = json.dumps(payload).encode()
        content_type = "application/json"
    start_response(
        f"{status} {reasons.get(status, '')}".strip(),
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [body]


class EmulatorApp:
    """WSGI app: /_emulator/ control paths, else counted (maybe throttled) moto."""

    def __init__(self, moto_app: Any) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return self._control(environ, start_response)

        action, service, protocol = _identify(environ)
        with STATE.lock:
            if action:
                STATE.calls[action] += 1
            throttled = bool(action) and service in ("ecs", "ec2") and STATE.throttle > 0
            if throttled:
                STATE.throttle -= 1
                return _throttle_response(protocol, start_response)
            result = self.moto_app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        return [body]

    def _control(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "").rstrip("/")
        route = CONTROL_ROUTES.get(path)
        if route is None:
            return _json_response(start_response, 404, {"error": f"no control endpoint {path}"})
        method, handler = route
        if environ.get("REQUEST_METHOD") != method:
            return _json_response(start_response, 405, {"error": f"{path} takes {method}"})
        raw = _read_body(environ)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            return _json_response(start_response, 400, {"error": f"body is not JSON: {e}"})
        if not isinstance(body, dict):
            return _json_response(start_response, 400, {"error": "body must be a JSON object"})
        try:
            with STATE.lock:
                payload = handler(body)
        except ControlError as e:
            return _json_response(start_response, e.status, {"error": str(e)})
        except Exception as e:  # noqa: BLE001 - report, don't kill the connection
            logging.getLogger("emulator").exception("control %s failed", path)
            return _json_response(start_response, 500, {"error": f"{type(e).__name__}: {e}"})
        return _json_response(start_response, 200, payload)


def _warm_up(moto_app: Any) -> None:
    """Build moto's ECS and EC2 apps and load their models before saying 'listening'."""
    from werkzeug.test import run_wsgi_app, EnvironBuilder

    auth = (
        "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/{}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )
    requests = [
        EnvironBuilder(
            path="/",
            method="POST",
            headers={
                "Authorization": auth.format("ecs"),
                "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters",
                "Content-Type": "application/x-amz-json-1.1",
            },
            data=b"{}",
        ),
        EnvironBuilder(
            path="/",
            method="POST",
            headers={"Authorization": auth.format("ec2")},
            content_type="application/x-www-form-urlencoded; charset=utf-8",
            data=b"Action=DescribeInstances&Version=2016-11-15",
        ),
    ]
    for builder in requests:
        app_iter, _status, _headers = run_wsgi_app(moto_app, builder.get_environ())
        b"".join(app_iter)


def _watch_parent() -> None:
    parent = os.getppid()
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 = ephemeral (default)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="emulator: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    moto_app = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        args.host, args.port, EmulatorApp(moto_app), threaded=True, request_handler=MotoRequestHandler
    )
    _warm_up(moto_app)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    sys.stdout.write(f"listening on {shown}:{port}\n")
    sys.stdout.flush()
    # Nothing else may reach stdout: a reader that stops after the first line
    # would otherwise fill the pipe and block us.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    threading.Thread(target=_watch_parent, name="parent-watch", daemon=True).start()
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
