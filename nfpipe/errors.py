"""Typed errors of nfpipe.

Every error nfpipe raises on bad input or a kernel refusal is an ``NfpipeError``
whose ``str()`` is one self-contained paragraph a user can act on.  Each
subclass carries the context that produced it as attributes, so callers (the
CLI, tests, a deploy that must roll back) can inspect it without parsing text.
"""
from __future__ import annotations

import errno as _errno
import os


class NfpipeError(Exception):
    """Base class: the message is one paragraph that says what went wrong and where."""

    exit_code = 1


class SpecError(NfpipeError):
    """Input that cannot be turned into a spec: a YAML pipeline, an ELF object.

    ``file``/``line``/``column`` locate a text source (1-based); ``program``,
    ``section`` and ``offset`` locate a place in an ELF object.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 line: int | None = None, column: int | None = None,
                 program: str | None = None, section: str | None = None,
                 offset: int | None = None):
        self.file = os.fspath(file) if file is not None else None
        self.line, self.column = line, column
        self.program, self.section, self.offset = program, section, offset
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        return where + self.reason


class ConfigErrors(SpecError):
    """Every problem in one node's config: ``errors`` is a list of (path inside the
    config, SpecError), so a pipeline file's check can place each at its line."""

    def __init__(self, errors: list[tuple[tuple, SpecError]]):
        self.errors = list(errors)
        super().__init__("; ".join(e.reason for _p, e in self.errors))


class UsageError(NfpipeError):
    """A command used wrongly: a bad argument, an option that needs another, a name
    that does not exist where the user pointed."""

    exit_code = 2


class GraphError(NfpipeError):
    """A pipeline graph that cannot be built: ``problems`` lists every one found."""

    exit_code = 2

    def __init__(self, message: str, *, node: str | None = None, problems: list | None = None):
        self.node = node
        self.problems = list(problems or [])
        super().__init__(message)


class CompileError(NfpipeError):
    """The C compiler rejected a source.

    ``diagnostics`` keeps the compiler's own ``file:line:col: error: ...`` lines
    verbatim; ``command`` is the argv that was run.
    """

    def __init__(self, message: str, *, source: str | None = None,
                 command: list[str] | None = None, diagnostics: str = ""):
        self.source = source
        self.command = list(command or [])
        self.diagnostics = diagnostics
        text = message
        if diagnostics:
            text += "\n" + diagnostics.rstrip()
        super().__init__(text)


class KernelError(NfpipeError, OSError):
    """A bpf() or netlink call failed: ``op`` names the call, ``errno`` the reason.

    The message adds a hint for the errnos users hit in practice (missing
    capability, memlock limit, unsupported feature).
    """

    errno: int                      # always set, unlike OSError's

    def __init__(self, op: str, err: int, detail: str = "", *, hint: str | None = None):
        self.op = op
        self.detail = detail
        OSError.__init__(self, err, _strerror(err))
        self.hint = hint if hint is not None else _hint_for(err, op)
        msg = f"{op} failed: {errno_name(err)} ({_strerror(err)})"
        if detail:
            msg += f": {detail}"
        if self.hint:
            msg += f"; {self.hint}"
        self.args = (msg,)

    def __str__(self) -> str:  # OSError's __str__ would print "[Errno n] ..." instead
        return self.args[0]

    def __reduce__(self):
        # Pickled whole (nfpipe.topo hands a child process's exception back so): its
        # fields and message, not OSError's args, which its __init__ does not take.
        return _rebuilt, (type(self), self.errno, self.__dict__.copy(), self.args)


def _rebuilt(cls: type[KernelError], err: int, state: dict, args: tuple) -> KernelError:
    e = cls.__new__(cls)
    OSError.__init__(e, err, _strerror(err))
    e.__dict__.update(state)
    e.args = args
    return e


ENOTSUPP = 524   # kernel-internal "operation not supported", leaks to user space from bpf()


def errno_name(err: int) -> str:
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, str(err))


def _strerror(err: int) -> str:
    if err == ENOTSUPP:
        return "operation not supported by this map or program type"
    return os.strerror(err)


def _hint_for(err: int, op: str = "") -> str:
    if err == _errno.EPERM:
        if os.geteuid() != 0:
            return ("nfpipe needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN) to load programs "
                    "and create maps; run it as root")
        return ("the kernel refused the operation although this process is root: check "
                "kernel.unprivileged_bpf_disabled, a seccomp/LSM policy, or lockdown mode")
    if err == _errno.ENOSYS:
        return "this kernel was built without the bpf() syscall (CONFIG_BPF_SYSCALL)"
    if err == _errno.E2BIG:
        up = op.upper()
        if "MAP" in up and "CREATE" not in up:
            # an insert into a full map (also one bound to an offload device, which may
            # hold very few entries: netdevsim 2), or an array index past max_entries
            return ("the map is full (max_entries reached; an offloaded map holds what the "
                    "device holds), or a key is past the end of an array map")
        return "the kernel does not know a field nfpipe set (the kernel is older than the feature)"
    return ""


class VerifierError(NfpipeError):
    """The kernel verifier rejected a program.

    ``log`` is the full verifier log; ``source_line`` is the last C source line
    the log named (from BTF line info) and ``insn`` the instruction it stopped at.
    """

    def __init__(self, program: str, err: int, log: str, *, source_line: str | None = None,
                 insn: str | None = None, excerpt: str = "", node: str | None = None):
        self.program = program
        self.errno = err
        self.log = log
        self.source_line = source_line
        self.insn = insn
        self.excerpt = excerpt
        self.node = node
        head = f"the verifier rejected program '{program}'"
        if node:
            head += f" of node '{node}'"
        head += f" ({errno_name(err)})"
        parts = [head]
        if source_line:
            parts.append(f"at C source line: {source_line}")
        if insn:
            parts.append(f"at instruction: {insn}")
        text = "; ".join(parts) + "."
        if excerpt:
            text += "\n" + excerpt.rstrip()
        super().__init__(text)


class AttachError(NfpipeError):
    """Attaching to an interface failed or was refused; ``iface``/``mode`` say where."""

    def __init__(self, message: str, *, iface: str | None = None, mode: str | None = None,
                 netlink_error: str | None = None):
        self.iface, self.mode, self.netlink_error = iface, mode, netlink_error
        text = message
        if netlink_error:
            text += f" (netlink: {netlink_error})"
        super().__init__(text)


class RuntimeChangeError(NfpipeError):
    """A node's runtime config cannot be changed so: the NF takes no change at runtime, a
    key is not a runtime key, or the new config sends packets to a port the pipeline does
    not wire.  *hint* says what to do instead (edit the file and deploy it)."""

    def __init__(self, message: str, *, node: str, hint: str = ""):
        super().__init__(message)
        self.node, self.hint = node, hint


class DeployError(NfpipeError):
    """A deploy, update, destroy or live change was refused or failed; nothing it did is
    left behind (a deploy killed halfway is finished or undone by the next one)."""


class NotFoundError(NfpipeError):
    """Something the user named does not exist: a deployed pipeline, a node, a map, an
    interface, a network namespace.  Bad input: exit code 2, as for usage errors."""

    exit_code = 2


class NoSuchInterface(AttachError, NotFoundError):
    """An interface or network namespace that does not exist."""


class NoSuchObject(DeployError, NotFoundError):
    """A deployed pipeline, or a node or map of one, that does not exist."""


class NoSuchSource(CompileError, NotFoundError):
    """A C source that does not exist."""


class AgentError(NfpipeError):
    """The agent (``nfpipe agent``) cannot use a desired state: a desired-pipeline file
    that does not parse (``source`` names it: a path or a store key), a pipeline it does
    not own, a store it cannot reach."""

    def __init__(self, message: str, *, source: str | None = None,
                 pipeline: str | None = None):
        self.source, self.pipeline = source, pipeline
        super().__init__(f"{source}: {message}" if source else message)


class StoreError(AgentError):
    """The desired-state store (etcd) refused a request or could not be reached;
    ``endpoint`` and ``op`` say which request, ``status`` the HTTP status if any."""

    def __init__(self, message: str, *, endpoint: str, op: str, status: int | None = None):
        self.endpoint, self.op, self.status = endpoint, op, status
        super().__init__(f"etcd {op} at {endpoint}: {message}")
