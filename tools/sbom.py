#!/usr/bin/env python3
"""Writes a CycloneDX 1.5 SBOM (JSON) of what a meshwait binary is built from.

    python3 tools/sbom.py TARGET > meshwait.cdx.json

The components are the crates compiled into the binary for TARGET: the normal (not dev, not build)
dependencies reachable from meshwait, as Cargo.lock resolves them, each with its version, licence,
package URL and the SHA-256 that Cargo.lock records for its crates.io archive. Only `cargo
metadata` and Cargo.lock are read, so the same commit gives the same document (the timestamp comes
from SOURCE_DATE_EPOCH when it is set).
"""
import datetime
import json
import os
import subprocess
import sys
import tomllib


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: sbom.py TARGET  (e.g. x86_64-unknown-linux-musl)")
    target = sys.argv[1]
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--filter-platform", target],
        check=True, capture_output=True, text=True).stdout)
    root_dir = os.path.dirname(metadata["workspace_root"] + "/")
    with open(os.path.join(root_dir, "Cargo.lock"), "rb") as lock:
        checksums = {(p["name"], p["version"]): p.get("checksum")
                     for p in tomllib.load(lock)["package"]}
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]

    # Normal dependencies only: a dev-dependency is never linked, and a build-dependency runs at
    # build time without ending up in the binary.
    def linked(dep):
        return any(kind["kind"] is None for kind in dep["dep_kinds"])

    # A procedural macro runs inside the compiler: it is listed (scope "excluded": not in the
    # binary), and what it depends on is not followed.
    def is_proc_macro(package_id):
        return any("proc-macro" in t["kind"] for t in packages[package_id]["targets"])

    reachable, todo = set(), [root]
    while todo:
        node = nodes[todo.pop()]
        for dep in node["deps"]:
            if linked(dep) and dep["pkg"] not in reachable:
                reachable.add(dep["pkg"])
                if not is_proc_macro(dep["pkg"]):
                    todo.append(dep["pkg"])

    def ref(package):
        return f"pkg:cargo/{package['name']}@{package['version']}"

    def component(package, kind):
        entry = {"type": kind, "bom-ref": ref(package), "name": package["name"],
                 "version": package["version"], "purl": ref(package)}
        if package.get("license"):
            entry["licenses"] = [{"expression": package["license"]}]
        if kind == "library" and is_proc_macro(package["id"]):
            entry["scope"] = "excluded"
        checksum = checksums.get((package["name"], package["version"]))
        if checksum:
            entry["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        return entry

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
              else datetime.datetime.now(datetime.timezone.utc))
    main_package = packages[root]
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": component(main_package, "application"),
            "properties": [{"name": "cargo:target", "value": target}],
        },
        "components": [component(packages[p], "library")
                       for p in sorted(reachable, key=lambda p: (packages[p]["name"],
                                                                 packages[p]["version"]))],
        "dependencies": [
            {"ref": ref(packages[n]),
             "dependsOn": sorted(ref(packages[d["pkg"]]) for d in nodes[n]["deps"] if linked(d))}
            for n in sorted((reachable | {root}) - {p for p in reachable if is_proc_macro(p)}, key=lambda p: (packages[p]["name"],
                                                                packages[p]["version"]))
        ],
    }
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
