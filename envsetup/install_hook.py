"""Installs music_retrieval_env into the running interpreter's site-packages, with a .pth that loads it.

Run with the environment's own Python (`.venv/bin/python envsetup/install_hook.py`); the Makefile and the
Dockerfile both do. Idempotent.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import sysconfig

HOOK_MODULE = "music_retrieval_env"
HOOK_SOURCE = pathlib.Path(__file__).resolve().with_name(f"{HOOK_MODULE}.py")


def install(site_packages: pathlib.Path) -> list[pathlib.Path]:
    """Copies the hook module and writes the .pth line that imports it; returns the files written."""
    if not site_packages.is_dir():
        raise SystemExit(f"site-packages not found at {site_packages}; run this with the environment's python")
    module_path = site_packages / f"{HOOK_MODULE}.py"
    pth_path = site_packages / f"{HOOK_MODULE}.pth"
    shutil.copyfile(HOOK_SOURCE, module_path)
    pth_path.write_text(f"import {HOOK_MODULE}\n")
    return [module_path, pth_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--site-packages",
        type=pathlib.Path,
        default=pathlib.Path(sysconfig.get_paths()["purelib"]),
        help="where to install (default: this interpreter's site-packages)",
    )
    args = parser.parse_args()
    for path in install(args.site_packages):
        print(f"installed {path}")


if __name__ == "__main__":
    main()
