"""Driving asv for ``nox -s asv``, and making its published dashboard work offline.

``python -m tools.asv_support [MODE ...]`` (what the nox session runs):

* no arguments: ``asv machine --yes``, then ``asv run NEW`` (the commits of main since the
  last recorded one) or ``asv run HEAD`` when nothing is recorded yet, then publish;
* ``run RANGE [asv args]``: backfill, e.g. ``run main~10..main`` or ``run HASHFILE:f``;
* ``same [asv args]``: ``asv run --python=same --set-commit-hash HEAD`` in this
  environment (a GPU machine whose torch is already installed; no network needed);
* ``continuous BASE HEAD [asv args]``: ``asv continuous --factor F``; exits non-zero when a
  benchmark got slower by more than F (``SEQBENCH_ASV_FACTOR``, default 1.1);
* ``compare BASE HEAD [asv args]``: ``asv compare --factor F`` of results already
  recorded (e.g. by ``same`` on two commits); exits 1 when one got worse by more than F
  (asv's own ``compare`` exits 0 whatever it finds);
* ``publish``: only publish.

Every publish is followed by :func:`vendor_dashboard`: asv's ``index.html`` loads jquery,
flot, bootstrap, stupidtable and blueimp-md5 from CDNs, which many cluster nodes cannot
reach. The same versions are taken from the npm registry (``npm pack``, or the registry's
tarball URL without npm), checked against pinned SHA-256 sums, unpacked beside the HTML,
and the tags are rewritten to load them locally without the CDN ``integrity`` attributes
(the npm builds are different files).

The torch asv installs comes from ``SEQBENCH_TORCH`` as in the noxfile. The default is
the one torch pin of the project: ``asv.conf.json``'s matrix (plain ``asv run`` must read
it there, so the noxfile reads it from there too, through :func:`pinned_torch`); anything
else (``torch==X``, ``torch``, with ``--index-url``/``--extra-index-url``/``--find-links``)
makes a derived config under ``results/asv-envs/`` whose matrix names that torch, so its
environment and its results are kept apart from the CPU ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "asv.conf.json"
DEFAULT_FACTOR = "1.1"
FACTOR_ENV = "SEQBENCH_ASV_FACTOR"
MODES = ("new", "run", "same", "continuous", "compare", "publish")
VENDOR_DIR = "vendor"


# -- offline dashboard ------------------------------------------------------------------
@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    sha256: str  # of the registry tarball

    @property
    def tarball_url(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return f"https://registry.npmjs.org/{self.name}/-/{base}-{self.version}.tgz"


@dataclass(frozen=True)
class Asset:
    """A CDN URL in asv's HTML and the npm files that replace it (member -> local path)."""

    url: str
    package: NpmPackage
    files: dict[str, str] = field(hash=False)
    ref: str = ""  # local path the tag loads; the first file when empty

    @property
    def local(self) -> str:
        return f"{VENDOR_DIR}/{self.ref or next(iter(self.files.values()))}"


_JQUERY = NpmPackage("jquery", "3.3.1",
                     "2c7c70a1e796c1568ff05d45a8cb2da2a0fc6e37426c65e4eef6ee55e217933e")
_FLOT = NpmPackage("flot", "0.8.3",
                   "5e4cea78a9efa2d3dbba363ac76c688951e6c638ee916883c36e23516208b1ed")
_ORDERBARS = NpmPackage("flot-orderbars", "1.0.0",
                        "e5523ee7cca778f194b34fc31afb6dda40bf1557e6669fda4730c29f53e87101")
# cdnjs serves stupidtable 1.0.1, which is not on npm; 1.1.3 is the same plugin API
_STUPIDTABLE = NpmPackage("stupid-table-plugin", "1.1.3",
                          "1186089584b7c2f7fec9ad4232e9aa1adbfea273eaa233b713beb8c2c916b4ac")
_MD5 = NpmPackage("blueimp-md5", "2.19.0",
                  "0fff5798c7733b21f3e4c0de69ccba12af266e0f01c3e3a41051c0e49a655512")
_BOOTSTRAP = NpmPackage("bootstrap", "3.1.1",
                        "23b27da4dd80b8fbe8972ac4be87037627e007ad5dd1edb27435844f0a4646a0")
_CDNJS_FLOT = "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/"
_GLYPHS = {f"package/dist/fonts/glyphicons-halflings-regular.{ext}":
           f"bootstrap/fonts/glyphicons-halflings-regular.{ext}"
           for ext in ("eot", "svg", "ttf", "woff")}

ASSETS: tuple[Asset, ...] = (
    Asset("https://code.jquery.com/jquery-3.3.1.min.js", _JQUERY,
          {"package/dist/jquery.min.js": "jquery/jquery.min.js"}),
    *(Asset(f"{_CDNJS_FLOT}jquery.flot{sub}.min.js", _FLOT,
            {f"package/jquery.flot{sub}.js": f"flot/jquery.flot{sub}.js"})
      for sub in ("", ".time", ".selection", ".categories")),
    Asset("https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js",
          _ORDERBARS, {"package/js/jquery.flot.orderBars.js": "flot/jquery.flot.orderBars.js"}),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js",
          _STUPIDTABLE, {"package/stupidtable.min.js": "stupidtable/stupidtable.min.js"}),
    Asset("https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js", _MD5,
          {"package/js/md5.min.js": "blueimp-md5/md5.min.js"}),
    Asset("https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js", _BOOTSTRAP,
          {"package/dist/js/bootstrap.min.js": "bootstrap/js/bootstrap.min.js"}),
    Asset("https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css", _BOOTSTRAP,
          {"package/dist/css/bootstrap.min.css": "bootstrap/css/bootstrap.min.css", **_GLYPHS},
          ref="bootstrap/css/bootstrap.min.css"),
)
_CDN_ATTRS = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"')
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_REMOTE = re.compile(r'\b(?:src|href)="((?:https?:)?//[^"]+)"', re.IGNORECASE)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "seqbench" / "npm"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_package(pkg: NpmPackage, cache_dir: Path) -> Path:
    """The package's registry tarball, from the cache or the npm registry, checksum-checked."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = pkg.name.rsplit("/", 1)[-1]
    target = cache_dir / f"{base}-{pkg.version}.tgz"
    if not (target.exists() and _sha256(target) == pkg.sha256):
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            npm = shutil.which("npm")
            if npm:
                subprocess.run([npm, "pack", f"{pkg.name}@{pkg.version}", "--silent",
                                "--pack-destination", tmp], check=True,
                               stdout=subprocess.DEVNULL)
                got = Path(tmp) / target.name
            else:
                got = Path(tmp) / target.name
                with urllib.request.urlopen(pkg.tarball_url, timeout=60) as r:  # noqa: S310
                    got.write_bytes(r.read())
            digest = _sha256(got)
            if digest != pkg.sha256:
                raise RuntimeError(f"{pkg.name}@{pkg.version}: tarball sha256 {digest} is not "
                                   f"the pinned {pkg.sha256}")
            os.replace(got, target)
    return target


def rewrite_html(text: str, assets: tuple[Asset, ...] = ASSETS) -> tuple[str, list[str]]:
    """``text`` with every known CDN script/stylesheet loaded from ``vendor/``; also the
    remote URLs left in script/link tags (none when asv's HTML is fully covered)."""
    by_url = {a.url: a for a in assets}
    unknown: list[str] = []

    def fix(m: re.Match[str]) -> str:
        tag = m.group(0)
        remote = _REMOTE.search(tag)
        if not remote:
            return tag
        asset = by_url.get(remote.group(1))
        if asset is None:
            unknown.append(remote.group(1))
            return tag
        tag = tag.replace(remote.group(1), asset.local)
        return _CDN_ATTRS.sub("", tag)

    return _TAG.sub(fix, text), unknown


def vendor_dashboard(html_dir: Path, cache_dir: Path | None = None) -> list[Path]:
    """Make a published asv dashboard self-contained; returns the HTML files rewritten.

    Raises RuntimeError when asv's HTML loads something this table does not know
    (a newer asv changed its CDN list) so the dashboard never silently half-works.
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise ValueError(f"{html_dir} has no index.html; run `asv publish` first")
    cache = cache_dir or default_cache_dir()
    rewritten: list[Path] = []
    needed: list[Asset] = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text(encoding="utf-8")
        new, unknown = rewrite_html(text)
        if unknown:
            raise RuntimeError(f"{page}: no offline copy for {', '.join(unknown)}; "
                               "add them to tools.asv_support.ASSETS")
        if new != text:
            needed += [a for a in ASSETS if a.url in text]
            page.write_text(new, encoding="utf-8")
            rewritten.append(page)
    for asset in {a.url: a for a in needed}.values():
        with tarfile.open(fetch_package(asset.package, cache)) as tar:
            for member, dest in asset.files.items():
                out = html_dir / VENDOR_DIR / dest
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    raise RuntimeError(f"{asset.package.name}: {member} is not a file")
                out.write_bytes(src.read())
    return rewritten


# -- configuration ----------------------------------------------------------------------
def load_config(path: Path = CONFIG) -> dict:
    """asv.conf.json, which allows whole-line ``//`` comments."""
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("//")]
    return json.loads("\n".join(lines))


def pinned_torch(path: Path = CONFIG) -> str:
    """The torch the project pins (``torch==X``), from asv.conf.json's matrix."""
    (version,) = load_config(path)["matrix"]["req"]["torch"]
    return f"torch=={version}"


def torch_matrix(spec: str) -> dict:
    """asv ``matrix`` for a SEQBENCH_TORCH spec: ``torch`` or ``torch==X``, optionally
    with ``--index-url U``, ``--extra-index-url U`` or ``--find-links U`` (as pip env
    vars while asv installs it)."""
    valid = ("valid forms: 'torch', 'torch==X.Y.Z', optionally followed by "
             "--index-url URL, --extra-index-url URL or --find-links URL")
    words = shlex.split(spec)
    m = re.fullmatch(r"torch(?:==([\w.+!-]+))?", words[0]) if words else None
    if m is None:
        raise ValueError(f"SEQBENCH_TORCH={spec!r} is not understood for asv; {valid}")
    options = {"--index-url": "PIP_INDEX_URL", "--extra-index-url": "PIP_EXTRA_INDEX_URL",
               "--find-links": "PIP_FIND_LINKS"}
    env: dict[str, str] = {}
    rest = words[1:]
    while rest:
        flag, *value = rest[0].split("=", 1)
        if flag not in options:
            raise ValueError(f"SEQBENCH_TORCH option {rest[0]!r} is not supported; {valid}")
        if not value:
            if len(rest) < 2:
                raise ValueError(f"SEQBENCH_TORCH option {flag} needs a URL; {valid}")
            value, rest = [rest[1]], rest[2:]
        else:
            rest = rest[1:]
        env[options[flag]] = value[0]
    matrix: dict = {"req": {"torch": [m.group(1) or ""]}}
    if env:
        matrix["env"] = env
    return matrix


def config_for(torch_spec: str, root: Path = ROOT) -> Path:
    """The asv config to use: asv.conf.json itself for the default torch, else a derived
    copy (absolute paths, matrix from ``torch_spec``) under results/asv-envs/."""
    base = root / "asv.conf.json"
    if torch_spec.strip() == pinned_torch(base):
        return base
    conf = load_config(base)
    for key in ("repo", "benchmark_dir", "env_dir", "results_dir", "html_dir"):
        conf[key] = str((root / conf[key]).resolve())
    conf["matrix"] = torch_matrix(torch_spec)
    digest = hashlib.sha256(torch_spec.encode()).hexdigest()[:10]
    out = Path(conf["env_dir"]) / f"asv.conf.{digest}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(conf, indent=2))
    return out


def has_results(results_dir: Path) -> bool:
    """Whether any commit has results (asv's NEW would otherwise mean *every* commit)."""
    return any(p.name not in ("machine.json", "benchmarks.json")
               for p in Path(results_dir).glob("*/*.json"))


# -- comparisons ------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareRow:
    """One row of ``asv compare``: its mark (``+`` worse, ``-`` better, ``!`` newly
    failing, ``x`` not comparable, blank unchanged) and the benchmark with parameters."""

    mark: str
    benchmark: str
    ratio: str

    @property
    def worse(self) -> bool:
        return self.mark in ("+", "!")


def parse_compare(text: str) -> list[CompareRow]:
    """The rows of ``asv compare`` output (its table of ``| mark | before | after | ratio |
    benchmark |`` lines)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not line.lstrip().startswith("|"):
            continue
        mark, _, _, ratio, bench = cells
        if bench.startswith("Benchmark") or set(bench) <= set("-:"):
            continue  # header and rule
        rows.append(CompareRow(mark=mark, benchmark=bench, ratio=ratio))
    return rows


# -- driver -----------------------------------------------------------------------------
def plan(argv: list[str], config: Path, results_dir: Path,
         factor: str = DEFAULT_FACTOR) -> list[list[str]]:
    """The asv commands for ``argv`` (see the module docstring); ``publish`` last unless
    the mode is ``continuous`` (its exit status is the answer)."""
    mode, args = (argv[0], argv[1:]) if argv else ("new", [])
    if mode not in MODES:
        raise ValueError(f"unknown asv mode {mode!r}; valid choices: {', '.join(MODES)}")
    def asv(sub: str, *rest: str) -> list[str]:
        return ["asv", sub, "--config", str(config), *rest]

    publish = asv("publish")
    if mode == "publish":
        return [publish]
    if mode == "continuous":
        if len(args) < 2:
            raise ValueError("continuous needs BASE and HEAD commits, e.g. "
                             "`continuous main~1 main`")
        given = any(a == "-f" or a.startswith("--factor") for a in args)
        extra = [] if given else ["--factor", factor]
        return [asv("machine", "--yes"), asv("continuous", *extra, "--show-stderr", *args)]
    if mode == "compare":
        if len(args) < 2:
            raise ValueError("compare needs BASE and HEAD commits, e.g. `compare main~1 main`")
        given = any(a == "-f" or a.startswith("--factor") for a in args)
        return [asv("compare", *([] if given else ["--factor", factor]), *args)]
    if mode == "same":
        run = ["--python=same", "--set-commit-hash", "HEAD", *args]
    elif mode == "run":
        if not args:
            raise ValueError("run needs a commit range, e.g. `run main~5..main` or "
                             "`run HASHFILE:hashes.txt`")
        run = list(args)
    else:
        run = ["NEW" if has_results(results_dir) else "HEAD", *args]
    return [asv("machine", "--yes"), asv("run", "--show-stderr", *run), publish]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = config_for(os.environ.get("SEQBENCH_TORCH") or pinned_torch())
        conf = load_config(config)
        results_dir = (config.parent / conf["results_dir"]).resolve()
        commands = plan(argv, config, results_dir,
                        os.environ.get(FACTOR_ENV, DEFAULT_FACTOR))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for cmd in commands:
        print("+", shlex.join(cmd), flush=True)
        if cmd[1] == "compare":
            out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            print(out.stdout, end="")
            worse = [r for r in parse_compare(out.stdout) if r.worse]
            for r in worse:
                print(f"REGRESSION ({r.ratio}): {r.benchmark}")
            return out.returncode or (1 if worse else 0)
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc != 0:
            return rc
        if cmd[1] == "publish":
            html = (config.parent / conf["html_dir"]).resolve()
            pages = vendor_dashboard(html)
            print(f"dashboard: {html / 'index.html'} (offline copies of its JavaScript in "
                  f"{html / VENDOR_DIR}; {len(pages)} page(s) rewritten)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
