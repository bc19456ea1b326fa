"""The Bazel BUILD files cover every Python module, name only files that exist, and each
target's dependencies provide the project modules its sources import.

BUILD files are Starlark, whose syntax is Python's: each is executed here with the rule
functions replaced by recorders, so the check needs no Bazel and takes milliseconds.
`srcs` are explicit lists (a `glob` fails the check), so a new module must be added to a
target by hand; these tests name the modules that are not.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Directories whose every `*.py` file must be in some target's srcs.
COVERED_DIRS = ("overfeat_tf", "pipelines", "export", "tests", "benchmarks")

# A module that runs as a program: a `__main__` guard (`overfeat_tf/cli.py` calls
# absl's `app.run` for the binaries but is no program itself).
_PROGRAM = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)

# Rules whose targets hold no Python sources; the check only needs them to evaluate.
_OTHER_RULES = ("load", "package", "licenses", "exports_files", "filegroup", "alias", "test_suite")


@dataclasses.dataclass(frozen=True)
class Target:
    """One py_* rule call; `srcs` and `main` are paths relative to the repository root."""

    kind: str
    label: str
    srcs: tuple[str, ...]
    main: str | None
    deps: tuple[str, ...] = ()


def label_to_path(package: str, label: str) -> str:
    """`foo.py`, `:foo.py` (in `package`) or `//pkg:foo.py` -> `pkg/foo.py`."""
    if label.startswith("//"):
        package, _, name = label[2:].partition(":")
    else:
        name = label.removeprefix(":")
    return f"{package}/{name}" if package else name


def normalize_label(package: str, label: str) -> str:
    """`:lib` (in `package`), `//pkg` or `//pkg:lib` -> `//pkg:lib`."""
    if label.startswith(":"):
        return f"//{package}{label}"
    if ":" not in label:
        return f"{label}:{label.rsplit('/', 1)[-1]}"
    return label


def _no_glob(*args, **kwargs):
    raise AssertionError("BUILD files list srcs explicitly: glob() would hide a missing module")


def read_build_file(root: pathlib.Path, build_file: pathlib.Path) -> list[Target]:
    """Evaluates one BUILD file with recording rule functions; returns its py_* targets."""
    package = build_file.parent.relative_to(root).as_posix().removeprefix(".")
    targets: list[Target] = []

    def py_rule(kind: str):
        def record(*, name: str, srcs=(), main=None, deps=(), **other_attributes):
            if main is None and kind != "py_library":
                main = name + ".py"  # Bazel's default main.
            targets.append(
                Target(
                    kind=kind,
                    label=f"//{package}:{name}",
                    srcs=tuple(label_to_path(package, src) for src in srcs),
                    main=None if main is None else label_to_path(package, main),
                    deps=tuple(normalize_label(package, dep) for dep in deps),
                )
            )

        return record

    namespace = {kind: py_rule(kind) for kind in ("py_library", "py_binary", "py_test")}
    namespace.update({rule: lambda *args, **kwargs: None for rule in _OTHER_RULES})
    namespace.update(glob=_no_glob, select=lambda branches: branches["//conditions:default"])
    exec(compile(build_file.read_text(), str(build_file), "exec"), namespace)
    return targets


def build_targets(root: pathlib.Path) -> list[Target]:
    """The py_* targets of every BUILD file of the workspace at `root`.

    Skips nested workspaces (the third_party stand-ins) and Bazel's output symlinks.
    """
    nested = [w.parent for w in root.rglob("WORKSPACE") if w.parent != root]
    return [
        target
        for build_file in sorted(root.rglob("BUILD"))
        if not build_file.relative_to(root).parts[0].startswith((".", "bazel-"))
        and not any(workspace in build_file.parents for workspace in nested)
        for target in read_build_file(root, build_file)
    ]


def python_modules(root: pathlib.Path) -> list[str]:
    """Every `*.py` file under COVERED_DIRS, relative to `root`."""
    return sorted(
        path.relative_to(root).as_posix()
        for directory in COVERED_DIRS
        for path in (root / directory).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def uncovered_modules(root: pathlib.Path, targets: list[Target]) -> list[str]:
    covered = {src for target in targets for src in target.srcs}
    return [module for module in python_modules(root) if module not in covered]


def dangling_files(root: pathlib.Path, targets: list[Target]) -> list[str]:
    return [
        f"{target.label}: {path}"
        for target in targets
        for path in (*target.srcs, *filter(None, [target.main]))
        if not (root / path).is_file()
    ]


def programs_without_binary(root: pathlib.Path, targets: list[Target]) -> list[str]:
    mains = {target.main for target in targets}
    return [
        module
        for module in python_modules(root)
        if module not in mains and _PROGRAM.search((root / module).read_text())
    ]


# Top-level packages of the project; imports of anything else are third-party.
PROJECT_PACKAGES = ("overfeat_tf", "pipelines", "export", "benchmarks", "tests")


def imported_modules(root: pathlib.Path, source: str) -> set[str]:
    """Project modules (paths relative to `root`) that a source file imports, at any
    depth (imports inside functions count: the target must provide them too)."""

    def module_file(dotted: str) -> str | None:
        base = root / dotted.replace(".", "/")
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path.relative_to(root).as_posix()
        return None

    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import name`: a submodule when pkg/name.py exists, else pkg's name.
            names += [f"{node.module}.{alias.name}" for alias in node.names]
            names.append(node.module)
    found = set()
    for name in names:
        if name.split(".")[0] in PROJECT_PACKAGES:
            path = module_file(name)
            if path is not None:
                found.add(path)
    return found


def missing_deps(root: pathlib.Path, targets: list[Target]) -> list[str]:
    """`label: module` for each project module a target imports but neither holds nor
    reaches through its (transitive) deps."""
    by_label = {t.label: t for t in targets}
    owners: dict[str, set[str]] = {}
    for t in targets:
        for src in t.srcs:
            owners.setdefault(src, set()).add(t.label)

    def reachable(label: str) -> set[str]:
        seen, stack = set(), [label]
        while stack:
            current = stack.pop()
            if current not in seen and current in by_label:
                seen.add(current)
                stack.extend(by_label[current].deps)
        return seen

    problems = []
    for t in targets:
        provided = set().union(*(by_label[label].srcs for label in reachable(t.label)))
        for src in t.srcs:
            for module in sorted(imported_modules(root, (root / src).read_text())):
                if module not in provided and module in owners:
                    problems.append(
                        f"{t.label}: {src} imports {module} "
                        f"(in {', '.join(sorted(owners[module]))})"
                    )
    return problems


@pytest.fixture(scope="module")
def targets() -> list[Target]:
    return build_targets(REPO_ROOT)


def test_root_has_build_and_workspace():
    assert (REPO_ROOT / "BUILD").is_file()
    assert (REPO_ROOT / "WORKSPACE").is_file()


def test_every_module_is_in_a_target(targets):
    missing = uncovered_modules(REPO_ROOT, targets)
    assert not missing, (
        "Python modules in no BUILD target's srcs (add each to the py_library, py_binary "
        f"or py_test in its directory's BUILD file): {', '.join(missing)}"
    )


def test_every_named_file_exists(targets):
    dangling = dangling_files(REPO_ROOT, targets)
    assert not dangling, f"BUILD targets name files that do not exist: {', '.join(dangling)}"


def test_every_program_is_the_main_of_a_binary(targets):
    orphans = programs_without_binary(REPO_ROOT, targets)
    assert not orphans, (
        f"modules with a __main__ guard that no py_binary runs: {', '.join(orphans)}"
    )


def test_every_main_is_among_its_srcs(targets):
    wrong = [f"{t.label}: {t.main}" for t in targets if t.main and t.main not in t.srcs]
    assert not wrong, f"py_binary/py_test mains missing from their srcs: {', '.join(wrong)}"


@pytest.mark.parametrize(
    "package, label, path",
    [
        ("pipelines", "decode.py", "pipelines/decode.py"),
        ("tests", ":pytest_main.py", "tests/pytest_main.py"),
        ("tests", "//:setup.py", "setup.py"),
        ("", "//overfeat_tf:models/spec.py", "overfeat_tf/models/spec.py"),
    ],
)
def test_label_to_path(package, label, path):
    assert label_to_path(package, label) == path


def test_the_check_names_what_is_wrong(tmp_path):
    (tmp_path / "WORKSPACE").touch()
    (tmp_path / "benchmarks").mkdir()
    for module in ("listed.py", "unlisted.py", "tool.py"):
        (tmp_path / "benchmarks" / module).write_text("")
    (tmp_path / "benchmarks" / "tool.py").write_text('if __name__ == "__main__":\n    pass\n')
    (tmp_path / "benchmarks" / "BUILD").write_text(
        'py_library(name = "lib", srcs = ["listed.py", "gone.py"])\n'
        'py_binary(name = "tool", srcs = ["tool.py"])\n'
    )
    # A stand-in workspace's BUILD files are not the project's.
    (tmp_path / "third_party" / "stub").mkdir(parents=True)
    (tmp_path / "third_party" / "stub" / "WORKSPACE").touch()
    (tmp_path / "third_party" / "stub" / "BUILD").write_text('py_library(name = "x")\n')

    targets = build_targets(tmp_path)
    assert [t.label for t in targets] == ["//benchmarks:lib", "//benchmarks:tool"]
    assert uncovered_modules(tmp_path, targets) == ["benchmarks/unlisted.py"]
    assert dangling_files(tmp_path, targets) == ["//benchmarks:lib: benchmarks/gone.py"]
    assert programs_without_binary(tmp_path, targets) == []

    (tmp_path / "benchmarks" / "BUILD").write_text(
        'py_library(name = "lib", srcs = ["listed.py", "unlisted.py", "tool.py"])\n'
    )
    assert programs_without_binary(tmp_path, build_targets(tmp_path)) == ["benchmarks/tool.py"]


def test_deps_cover_the_imports(targets):
    missing = missing_deps(REPO_ROOT, targets)
    assert not missing, "BUILD deps miss imported modules:\n" + "\n".join(missing)


def test_a_missing_dep_is_named(tmp_path):
    (tmp_path / "WORKSPACE").touch()
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text("")
    (tmp_path / "pipelines" / "lib.py").write_text("import os\n")
    (tmp_path / "pipelines" / "tool.py").write_text("def main():\n    from pipelines import lib\n")
    (tmp_path / "pipelines" / "BUILD").write_text(
        'py_library(name = "pipelines", srcs = ["__init__.py", "lib.py"])\n'
        'py_binary(name = "tool", srcs = ["tool.py"])\n'
    )
    targets = build_targets(tmp_path)
    assert missing_deps(tmp_path, targets) == [
        "//pipelines:tool: pipelines/tool.py imports pipelines/__init__.py "
        "(in //pipelines:pipelines)",
        "//pipelines:tool: pipelines/tool.py imports pipelines/lib.py (in //pipelines:pipelines)",
    ]
    (tmp_path / "pipelines" / "BUILD").write_text(
        'py_library(name = "pipelines", srcs = ["__init__.py", "lib.py"])\n'
        'py_binary(name = "tool", srcs = ["tool.py"], deps = ["//pipelines"])\n'
    )
    assert missing_deps(tmp_path, build_targets(tmp_path)) == []


def test_glob_is_refused(tmp_path):
    (tmp_path / "BUILD").write_text('py_library(name = "all", srcs = glob(["*.py"]))\n')
    with pytest.raises(AssertionError, match="explicitly"):
        build_targets(tmp_path)
