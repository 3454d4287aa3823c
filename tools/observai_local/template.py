"""Read template.yaml: functions, their resolved environment, HttpApi routes, CORS and schedules.

Only what the local runner needs is resolved: parameters (defaults plus overrides), pseudo parameters,
conditions, mappings and the intrinsic functions that combine them. A reference to a resource
(``!Ref CommonLayer``, ``!GetAtt X.Arn``) resolves to a readable local placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "observai-local",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/observai-local/local",
    "AWS::NoValue": None,
}

# CloudFormation short tags; each becomes its long form {"Fn::X": value} ({"Ref": value} for !Ref).
_SHORT_TAGS = (
    *("Ref", "Condition", "Base64", "Cidr", "FindInMap", "GetAtt", "GetAZs", "ImportValue", "Join", "Select"),
    *("Split", "Sub", "Transform", "And", "Equals", "If", "Not", "Or", "ToJsonString", "Length"),
)


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that understands !Ref, !Sub, !GetAtt, !If, !Split, !Join and the rest."""


def _constructor(tag: str):
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in _SHORT_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _constructor(_tag))


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


class Resolver:
    """Evaluates intrinsic functions against parameters, conditions and mappings."""

    def __init__(self, doc: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> None:
        self.doc = doc
        self.parameters: dict[str, Any] = {}
        for name, spec in (doc.get("Parameters") or {}).items():
            if "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        self.parameters.update({k: str(v) for k, v in (parameters or {}).items()})
        self.resources = set(doc.get("Resources") or {})

    def condition(self, name: str) -> bool:
        return bool(self.resolve((self.doc.get("Conditions") or {})[name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = getattr(self, "_" + key.replace("Fn::", "fn_").replace("::", "_"), None)
            if handler is not None:
                return handler(arg)
        return {k: self.resolve(v) for k, v in value.items()}

    def _Ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        return f"local-{name}" if name in self.resources else None

    def _Condition(self, name: str) -> bool:
        return self.condition(name)

    def _fn_GetAtt(self, arg: list[str]) -> str:
        return f"local-{arg[0]}-{arg[1]}"

    def _fn_Sub(self, arg: str | list[Any]) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return self._fn_GetAtt(name.split(".", 1))
            resolved = self._Ref(name)
            return "" if resolved is None else str(resolved)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _fn_Join(self, arg: list[Any]) -> str:
        return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))

    def _fn_Split(self, arg: list[Any]) -> list[str]:
        return str(self.resolve(arg[1])).split(arg[0])

    def _fn_Select(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1])[int(self.resolve(arg[0]))]

    def _fn_FindInMap(self, arg: list[Any]) -> Any:
        name, top, second = (self.resolve(a) for a in arg[:3])
        return self.doc["Mappings"][name][top][second]

    def _fn_If(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _fn_Equals(self, arg: list[Any]) -> bool:
        left, right = (self.resolve(a) for a in arg)
        return str(left) == str(right)

    def _fn_Not(self, arg: list[Any]) -> bool:
        return not self.resolve(arg[0])

    def _fn_And(self, arg: list[Any]) -> bool:
        return all(self.resolve(a) for a in arg)

    def _fn_Or(self, arg: list[Any]) -> bool:
        return any(self.resolve(a) for a in arg)


@dataclass(frozen=True)
class Route:
    method: str  # upper case, or ANY
    path: str  # as in the template: /v1/orgs/{org_id}, /{proxy+}
    function: str  # logical id

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Schedule:
    expression: str  # rate(...) or cron(...)
    function: str
    name: str  # the event's logical name in the template
    timezone: str = "UTC"
    source: str = "aws.scheduler"  # ScheduleV2: EventBridge Scheduler; Schedule: an EventBridge rule
    input: str | None = None


@dataclass(frozen=True)
class QueueSource:
    """An SQS event source: Lambda polls ``queue`` and invokes ``function`` with batches of its messages."""

    function: str
    name: str  # the event's logical name in the template
    queue: str  # logical id of the AWS::SQS::Queue
    url_variable: str | None  # the function's environment variable set to the queue's URL (!Ref queue)
    batch_size: int = 10


@dataclass
class FunctionSpec:
    logical_id: str
    function_name: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    routes: list[Route] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    queues: list[QueueSource] = field(default_factory=list)

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


@dataclass
class Template:
    path: Path
    parameters: dict[str, Any]
    functions: dict[str, FunctionSpec]
    cors: CorsConfig | None

    @property
    def routes(self) -> list[Route]:
        return [route for spec in self.functions.values() for route in spec.routes]

    @property
    def schedules(self) -> list[Schedule]:
        return [s for spec in self.functions.values() for s in spec.schedules]

    @property
    def queue_sources(self) -> list[QueueSource]:
        return [q for spec in self.functions.values() for q in spec.queues]

    def function(self, logical_id: str) -> FunctionSpec:
        try:
            return self.functions[logical_id]
        except KeyError:
            known = ", ".join(sorted(self.functions))
            raise KeyError(f"no function {logical_id!r} in {self.path.name} (functions: {known})") from None


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


def _cors(resolved: Any) -> CorsConfig | None:
    if not resolved:
        return None
    if resolved is True:  # CorsConfiguration: true allows everything
        return CorsConfig(allow_origins=("*",), allow_headers=("*",), allow_methods=("*",))
    return CorsConfig(
        allow_origins=_tuple(resolved.get("AllowOrigins")),
        allow_headers=tuple(h.lower() for h in _tuple(resolved.get("AllowHeaders"))),
        allow_methods=tuple(m.upper() for m in _tuple(resolved.get("AllowMethods"))),
        expose_headers=tuple(h.lower() for h in _tuple(resolved.get("ExposeHeaders"))),
        max_age=int(resolved["MaxAge"]) if resolved.get("MaxAge") is not None else None,
        allow_credentials=str(resolved.get("AllowCredentials", False)).lower() == "true",
    )


def _queue_logical_id(raw: Any) -> str | None:
    """ExportQueue from ``!GetAtt ExportQueue.Arn`` (the form SQS events use here)."""
    if isinstance(raw, dict) and "Fn::GetAtt" in raw:
        target = raw["Fn::GetAtt"]
        parts = target if isinstance(target, list) else str(target).split(".", 1)
        return str(parts[0])
    return None


def load_template(path: Path | None = None, parameters: Mapping[str, str] | None = None) -> Template:
    """Parse the SAM template; ``parameters`` override the template's Parameter defaults."""
    path = (path or TEMPLATE_PATH).resolve()
    doc = load_yaml(path)
    r = Resolver(doc, parameters)
    globals_fn = (doc.get("Globals") or {}).get("Function") or {}
    global_env = r.resolve(((globals_fn.get("Environment") or {}).get("Variables")) or {})
    resources = doc.get("Resources") or {}

    cors: CorsConfig | None = None
    globals_api = (doc.get("Globals") or {}).get("HttpApi") or {}
    for resource in resources.values():
        if resource.get("Type") == "AWS::Serverless::HttpApi":
            props = resource.get("Properties") or {}
            cors = _cors(r.resolve(props.get("CorsConfiguration", globals_api.get("CorsConfiguration"))))

    functions: dict[str, FunctionSpec] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**globals_fn, **(resource.get("Properties") or {})}
        raw_env = ((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
        own_env = r.resolve(raw_env) or {}
        env = {k: str(v) for k, v in {**global_env, **own_env}.items() if v is not None}
        spec = FunctionSpec(
            logical_id=logical_id,
            function_name=str(r.resolve(props.get("FunctionName")) or logical_id),
            code_uri=(path.parent / str(r.resolve(props.get("CodeUri", ".")))).resolve(),
            handler=str(r.resolve(props["Handler"])),
            runtime=str(r.resolve(props.get("Runtime", ""))),
            timeout=int(r.resolve(props.get("Timeout", 3))),
            memory_size=int(r.resolve(props.get("MemorySize", 128))),
            environment=env,
        )
        for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            kind, ev = event.get("Type"), r.resolve(event.get("Properties") or {})
            if kind == "HttpApi":
                method = str(ev.get("Method", "ANY")).upper()
                spec.routes.append(
                    Route(
                        "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                        str(ev.get("Path", "$default")),
                        logical_id,
                    )
                )
            elif kind in ("ScheduleV2", "Schedule"):
                expression = ev.get("ScheduleExpression") if kind == "ScheduleV2" else ev.get("Schedule")
                if str(ev.get("State", "ENABLED")).upper() == "DISABLED" or ev.get("Enabled") is False:
                    continue
                spec.schedules.append(
                    Schedule(
                        expression=str(expression),
                        function=logical_id,
                        name=event_name,
                        timezone=str(ev.get("ScheduleExpressionTimezone") or "UTC"),
                        source="aws.scheduler" if kind == "ScheduleV2" else "aws.events",
                        input=None if ev.get("Input") is None else str(ev["Input"]),
                    )
                )
            elif kind == "SQS":
                queue = _queue_logical_id((event.get("Properties") or {}).get("Queue"))
                if queue is None or ev.get("Enabled") is False:
                    continue
                url_variable = next((k for k, v in raw_env.items() if v == {"Ref": queue}), None)
                spec.queues.append(
                    QueueSource(logical_id, event_name, queue, url_variable, int(ev.get("BatchSize") or 10))
                )
        functions[logical_id] = spec
    return Template(path=path, parameters=dict(r.parameters), functions=functions, cors=cors)
