"""A minimal Debug Adapter Protocol client, and debugpy sessions driven by it.

Just what the tests and bench/debugpy_bench.py need: start a program under
debugpy (``--listen --wait-for-client``), connect as VS Code does (initialize,
attach, setBreakpoints, setExceptionBreakpoints, configurationDone), then
wait for ``stopped`` events and read stacks and variables.  Messages are
JSON bodies after a ``Content-Length`` header, as the protocol specifies.
Every wait has a deadline; :class:`Session` kills its process on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

Message = Dict[str, Any]

TIMEOUT = 30.0


class DAPError(Exception):
    """The adapter refused a request, closed the connection or timed out."""


def adapter_port(endpoints: str, process: subprocess.Popen[bytes], deadline: float) -> int:
    """The port debugpy's adapter takes clients on, read from the file
    *endpoints* (the adapter's environment variable DEBUGPY_ADAPTER_ENDPOINTS),
    which the adapter writes once it is set up; *process* started it.

    Connecting as soon as the port accepts is too early: debugpy's adapter
    (1.8.22) accepts clients before it sets ``clients.listener``, and an
    ``attach`` it handles in between fails there on an AttributeError, upon
    which it closes the connection.  A busy machine can hold its main thread
    back that long.  Port 0 also leaves the choice of the port to the system,
    so no other session can take it."""
    while True:
        try:
            with open(endpoints) as f:
                text = f.read()
        except FileNotFoundError:
            text = ""
        # Written with a newline at the end: without it, not complete yet.
        if text.endswith("\n"):
            return int(json.loads(text)["client"]["port"])
        if process.poll() is not None:
            raise DAPError("the process ended (status %d) before debugpy's adapter listened"
                           % process.returncode)
        if time.monotonic() > deadline:
            raise DAPError("debugpy's adapter did not say where it listens")
        time.sleep(0.05)


class Client:
    """One connection to a debug adapter: requests, responses and events."""

    def __init__(self, port: int, *, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        try:
            self._socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as error:
            raise DAPError("cannot connect to port %d: %s" % (port, error)) from None
        self._buffer = b""
        self._seq = 0
        # Messages read while waiting for another one, oldest first.
        self._pending: List[Message] = []

    def close(self) -> None:
        self._socket.close()

    def send(self, command: str, arguments: Optional[Message] = None) -> int:
        """Send a request; return its sequence number."""
        self._seq += 1
        message = {"seq": self._seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        body = json.dumps(message).encode("utf-8")
        self._socket.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._seq

    def request(self, command: str, arguments: Optional[Message] = None) -> Message:
        """Send a request and return the body of its successful response."""
        seq = self.send(command, arguments)
        return self.response(seq)

    def response(self, seq: int) -> Message:
        message = self.wait(lambda m: m["type"] == "response" and m["request_seq"] == seq)
        if not message["success"]:
            raise DAPError("%s failed: %s" % (message["command"], message.get("message")))
        return message.get("body", {})

    def event(self, name: str, timeout: Optional[float] = None) -> Message:
        """The body of the next event called *name*."""
        message = self.wait(lambda m: m["type"] == "event" and m["event"] == name, timeout)
        return message.get("body", {})

    def wait(self, match: Callable[[Message], bool], timeout: Optional[float] = None) -> Message:
        """The first message, read before or now, that *match* accepts."""
        for index, message in enumerate(self._pending):
            if match(message):
                return self._pending.pop(index)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self._read(deadline)
            if match(message):
                return message
            self._pending.append(message)

    def _read(self, deadline: float) -> Message:
        while True:
            header, separator, rest = self._buffer.partition(b"\r\n\r\n")
            if separator:
                length = None
                for line in header.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    raise DAPError("message without Content-Length: %r" % header)
                if len(rest) >= length:
                    self._buffer = rest[length:]
                    return json.loads(rest[:length].decode("utf-8"))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DAPError("timed out waiting for the adapter")
            self._socket.settimeout(remaining)
            try:
                chunk = self._socket.recv(65536)
            except socket.timeout:
                raise DAPError("timed out waiting for the adapter") from None
            if not chunk:
                raise DAPError("the adapter closed the connection")
            self._buffer += chunk


class Session:
    """A program run under debugpy, with a connected :class:`Client`.

    *launcher* is the command before debugpy's arguments, e.g.
    ``[python, "-m", "debugpy"]`` or ``[python, "-m", "lowimpact",
    "debugpy"]``.  Use as a context manager: the process is killed on exit
    if it is still running, and its stderr is kept in :attr:`stderr`.
    """

    def __init__(self, launcher: Sequence[str], program: str, args: Sequence[str] = (),
                 *, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
                 timeout: float = TIMEOUT) -> None:
        self._attach_seq: Optional[int] = None
        self._run([*launcher, "--listen", "127.0.0.1:0", "--wait-for-client", program, *args],
                  env, cwd, timeout)

    def _run(self, command: Sequence[str], env: Optional[Dict[str, str]], cwd: Optional[str],
             timeout: float) -> None:
        """Start *command*, which starts debugpy's adapter on port 0; connect
        to the adapter once it says where it listens (see adapter_port())."""
        self.timeout = timeout
        self.stdout = ""
        self.stderr = ""
        self._directory = tempfile.mkdtemp(prefix="lowimpact-dap-")
        endpoints = os.path.join(self._directory, "endpoints")
        env = dict(os.environ if env is None else env, DEBUGPY_ADAPTER_ENDPOINTS=endpoints)
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.port = adapter_port(endpoints, self.process, time.monotonic() + timeout)
            self.client = Client(self.port, timeout=timeout)
        except BaseException as error:
            # Kill it, and add its stderr to a DAPError.
            self.__exit__(type(error), error, None)
            raise

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.kill()
        if isinstance(value, DAPError):
            # What the debuggee or adapter said is what explains it.
            value.args = ("%s\n--- its stderr:\n%s" % (value, self.stderr[-3000:]),)

    def kill(self) -> None:
        """End the process (if still running) and collect its output."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.process.poll() is None:
            self.process.kill()
        out, err = self.process.communicate()
        self.stdout = out.decode("utf-8", "replace")
        self.stderr = err.decode("utf-8", "replace")
        shutil.rmtree(self._directory, ignore_errors=True)

    def start(self, breakpoints: Optional[Dict[str, Sequence[Message]]] = None,
              exceptions: Sequence[str] = (), *, just_my_code: bool = True) -> None:
        """Initialize, attach, set *breakpoints* ({file: [{"line": n, ...}]})
        and exception filters, and let the program run."""
        client = self.client
        client.request("initialize", {"clientID": "lowimpact-tests", "adapterID": "debugpy",
                                      "pathFormat": "path", "linesStartAt1": True,
                                      "columnsStartAt1": True})
        self._attach_seq = client.send("attach", {"justMyCode": just_my_code, "redirectOutput": False})
        client.event("initialized")
        for path, lines in (breakpoints or {}).items():
            self.set_breakpoints(path, lines)
        client.request("setExceptionBreakpoints", {"filters": list(exceptions)})
        client.request("configurationDone")
        client.response(self._attach_seq)

    def set_breakpoints(self, path: str, lines: Sequence[Message]) -> List[Message]:
        """Replace the breakpoints of *path*; return the adapter's view of them."""
        body = self.client.request("setBreakpoints", {
            "source": {"path": path}, "breakpoints": list(lines)})
        return body["breakpoints"]

    def stopped(self, timeout: Optional[float] = None) -> Message:
        """The next ``stopped`` event's body."""
        return self.client.event("stopped", timeout)

    def stack(self, thread: int) -> List[Message]:
        return self.client.request("stackTrace", {"threadId": thread})["stackFrames"]

    def locals(self, frame: int) -> Dict[str, str]:
        """{name: value as shown} of the first scope (Locals) of *frame*."""
        scopes = self.client.request("scopes", {"frameId": frame})["scopes"]
        reference = scopes[0]["variablesReference"]
        variables = self.client.request("variables", {"variablesReference": reference})
        return {v["name"]: v["value"] for v in variables["variables"]}

    def evaluate(self, expression: str, frame: int) -> str:
        return self.client.request("evaluate", {"expression": expression, "frameId": frame,
                                                "context": "watch"})["result"]

    def resume(self, command: str, thread: int) -> None:
        """continue, next, stepIn or stepOut."""
        self.client.request(command, {"threadId": thread})

    def disconnect(self) -> None:
        """Detach and let the program run to its end; wait for it."""
        self.client.request("disconnect", {"terminateDebuggee": False})
        try:
            self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise DAPError("the program did not end after disconnect") from None

    def wait_exit(self) -> int:
        """The program's exit status, once it ended by itself."""
        try:
            return self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise DAPError("the program did not end") from None


class LaunchSession(Session):
    """A program that debugpy's adapter launches, as VS Code has it do: the
    adapter listens on a port (``python -m debugpy.adapter --port``), and
    the client's ``launch`` request names the interpreter, program,
    arguments and environment of the debuggee.  :meth:`Session.wait_exit`
    waits for the ``terminated`` event instead (the adapter stays)."""

    def __init__(self, python: str, program: str, args: Sequence[str] = (), *,
                 debuggee_python: Optional[str] = None,
                 debuggee_env: Optional[Dict[str, str]] = None,
                 env: Optional[Dict[str, str]] = None, timeout: float = TIMEOUT) -> None:
        self.launch = {"program": program, "args": list(args),
                       "python": [debuggee_python or python], "env": debuggee_env or {},
                       "console": "internalConsole", "redirectOutput": True}
        self._run([python, "-m", "debugpy.adapter", "--host", "127.0.0.1", "--port", "0"],
                  env, None, timeout)

    def start(self, breakpoints: Optional[Dict[str, Sequence[Message]]] = None,
              exceptions: Sequence[str] = (), *, just_my_code: bool = True) -> None:
        client = self.client
        client.request("initialize", {"clientID": "lowimpact-tests", "adapterID": "debugpy",
                                      "pathFormat": "path", "linesStartAt1": True,
                                      "columnsStartAt1": True})
        launch = client.send("launch", dict(self.launch, justMyCode=just_my_code))
        client.event("initialized")
        for path, lines in (breakpoints or {}).items():
            self.set_breakpoints(path, lines)
        client.request("setExceptionBreakpoints", {"filters": list(exceptions)})
        client.request("configurationDone")
        client.response(launch)

    def wait_exit(self) -> int:
        body = self.client.event("exited")
        self.client.event("terminated")
        return body["exitCode"]


def pythonpath(*entries: str) -> Dict[str, str]:
    """The environment, with *entries* first on PYTHONPATH."""
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([*entries, *([old] if old else [])])
    return env
