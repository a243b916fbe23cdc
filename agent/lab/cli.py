"""``agent lab up|down|probe|status|reset``: the practice lab from the command line.

Why a separate, standard-library-only entry point: ``agent lab ...`` should start in tens of milliseconds, so it
must not import the agent's heavy dependencies; the main CLI hands the arguments here. Exit codes: 0 success,
1 the lab failed (message on stderr), 2 usage error, 3 the lab is not up (probe/status/reset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from agent.lab.errors import LabError

__all__ = ["EXIT_FAILED", "EXIT_NOT_UP", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_UP = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent lab", description="The practice lab (needs root).")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default="cal", help="lab name: namespaces are PREFIX-HOST (default: cal)")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    up = sub.add_parser("up", parents=[common], help="build the lab (keeps a healthy running one)")
    up.add_argument("--rebuild", action="store_true", help="tear down and build afresh even if healthy")
    up.add_argument("--hosts", type=int, default=None, metavar="N",
                    help="also N identical Linux hosts h01..hNN (10.77.0.101+, tag 'fleet') for outbreak drills")
    up.add_argument("--sites", type=int, default=None, metavar="K",
                    help="split the --hosts over K site segments (10.77.(16+k).0/24, sites site1..siteK), each "
                         "reached only from its worker host wkK (run `agent worker --site siteK` there)")
    up.add_argument("--with-ad", action="store_true",
                    help="also start a Samba AD domain controller at 10.77.0.50 (directory lab-ad)")
    sub.add_parser("down", parents=[common], help="stop the lab and delete its namespaces")
    sub.add_parser("probe", parents=[common], help="print the reachability matrix")
    sub.add_parser("status", parents=[common], help="say whether the lab is up and list its hosts")
    sub.add_parser("reset", parents=[common], help="remove all firewall rules and tracked flows on every host")
    return parser


def _hosts_table(lab: object) -> str:
    from agent.lab.lab import Lab
    assert isinstance(lab, Lab)
    rows = [("HOST", "NAMESPACE", "ADDRESS", "SSHD", "NFT")] + [
        (h.name, h.namespace, ", ".join(h.addresses), "yes" if h.has_sshd else "-", "yes" if h.has_nft else "no")
        for h in lab.hosts.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def _run(args: argparse.Namespace) -> int:
    from agent.lab.lab import Lab
    lab = Lab(prefix=args.prefix, fleet=getattr(args, "hosts", None), sites=getattr(args, "sites", None))
    out = sys.stdout
    if args.command == "up":
        start = time.monotonic()
        lab.up(rebuild=args.rebuild)
        if args.with_ad:
            lab.up_ad()
        config = lab.config_dir / "agent.yaml"
        took = time.monotonic() - start
        if args.json:
            json.dump({"prefix": lab.prefix, "up": True, "seconds": round(took, 3), "config": str(config),
                       "hosts": {h.name: {"namespace": h.namespace, "addresses": list(h.addresses)}
                                 for h in lab.hosts.values()}}, out)
            out.write("\n")
        else:
            out.write(f"lab {lab.prefix!r} up in {took:.2f} s\n{_hosts_table(lab)}\n"
                      f"config: {config}\nrun the agent from mgmt: ip netns exec {lab.hosts['mgmt'].namespace} ...\n")
        return EXIT_OK
    if args.command == "down":
        lab.down()
        out.write(json.dumps({"prefix": lab.prefix, "up": False}) + "\n" if args.json
                  else f"lab {lab.prefix!r} down\n")
        return EXIT_OK
    if not lab.is_up():
        message = f"lab {lab.prefix!r} is not up: run `agent lab up`"
        if args.command == "status":
            out.write(json.dumps({"prefix": lab.prefix, "up": False}) + "\n" if args.json else message + "\n")
        else:
            print(message, file=sys.stderr)
        return EXIT_NOT_UP
    if args.command == "probe":
        result = lab.probe()
        if args.json:
            json.dump({"prefix": lab.prefix, "seconds": round(result.elapsed, 3), "checks": result.records()}, out)
            out.write("\n")
        else:
            out.write(result.render() + "\n")
        return EXIT_OK
    if args.command == "reset":
        lab.reset()
        out.write(json.dumps({"prefix": lab.prefix, "reset": True}) + "\n" if args.json
                  else f"lab {lab.prefix!r} reset to baseline\n")
        return EXIT_OK
    if args.json:
        json.dump({"prefix": lab.prefix, "up": True, "config": str(lab.config_dir / "agent.yaml"),
                   "hosts": {h.name: {"namespace": h.namespace, "addresses": list(h.addresses)}
                             for h in lab.hosts.values()}}, out)
        out.write("\n")
    else:
        out.write(f"lab {lab.prefix!r} is up\n{_hosts_table(lab)}\n")
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Run ``agent lab`` with ``argv`` (the words after ``lab``); return the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        return _run(args)
    except LabError as exc:
        print(f"agent lab: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
