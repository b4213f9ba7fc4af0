"""Route-table build time at 100, 1,000 and 10,000 Ingresses.

Each Ingress has its own host and two paths, backed by its own Service and EndpointSlice
(three ready endpoints), so 10,000 Ingresses are 30,000 objects and 20,000 routes. Three
times are printed per size, best of --repeat runs:

  read  - the manifests directory read from disk and parsed (YAML, C loader) into objects
  again - the same directory read again after one file changed (unchanged files are cached)
  parse - manifest dicts validated into typed objects (what a Kubernetes watch delivers)
  build - objects translated, bound and indexed into a route table (what a change costs)

    python bench/table_build.py [--sizes 100 1000 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gateway_core.manifests import build_snapshot
from gateway_core.providers.file import ManifestDirectory
from gateway_core.routing import BuildOptions, build_table
from gateway_core.testing import endpoint_slice, ingress, path, service
from gateway_core.transport.balancing import round_robin


def objects(count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for index in range(count):
        name = f"svc-{index}"
        addresses = [f"10.{index // 256 % 256}.{index % 256}.{offset}" for offset in (1, 2, 3)]
        found += [
            service(name),
            endpoint_slice(name, addresses, port=8080),
            ingress(f"ing-{index}", rules=[(f"host-{index}.example.com", [path("/", name), path("/api", name)])]),
        ]
    return found


def best(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    options = BuildOptions(specs={}, balancer_factory=round_robin)
    print(
        f"{'ingresses':>9} {'objects':>8} {'routes':>7} {'read ms':>9} {'again ms':>9} {'parse ms':>9} {'build ms':>9}"
    )
    for size in args.sizes:
        documents = objects(size)
        pairs = [("bench", document) for document in documents]
        with tempfile.TemporaryDirectory(prefix="gateway-table-bench-") as tmp:
            chunk = 300  # 100 Ingresses (with their Services and slices) per file
            for start in range(0, len(documents), chunk):
                Path(tmp, f"part-{start // chunk:04}.yaml").write_text(
                    yaml.safe_dump_all(documents[start : start + chunk])
                )
            read = best(args.repeat, lambda tmp=tmp: ManifestDirectory(tmp).load())  # type: ignore[misc]
            directory = ManifestDirectory(tmp)
            directory.load()
            changed = Path(tmp, "part-0000.yaml")

            def touch_and_reload(changed: Path = changed, directory: ManifestDirectory = directory) -> None:
                changed.write_text(changed.read_text() + "\n")
                directory.load()

            again = best(args.repeat, touch_and_reload)
        parse = best(args.repeat, lambda pairs=pairs: build_snapshot(pairs))  # type: ignore[misc]
        snapshot = build_snapshot(pairs)
        assert not snapshot.problems, snapshot.problems[:3]
        build = best(args.repeat, lambda snapshot=snapshot: build_table(snapshot, options))  # type: ignore[misc]
        table = build_table(snapshot, options)
        print(
            f"{size:>9} {len(documents):>8} {len(table.routes):>7} {read * 1000:>9.1f} {again * 1000:>9.1f} "
            f"{parse * 1000:>9.1f} {build * 1000:>9.1f}"
        )


if __name__ == "__main__":
    main()
