"""Offline stand-in for the get-pip bootstrap script that `ansible-test --venv` downloads.

ansible-test fetches get-pip.py from a host these machines cannot reach, and
says the script may be saved by hand to ~/.ansible/test/cache/get_pip_<ver>.py.
`make sanity` saves this one there instead: it installs pip into the new
virtualenv from the interpreter's own ensurepip wheel (Debian: python3-venv),
then runs `pip install` with the arguments ansible-test passes (pip==<ver>,
from the configured package index), honouring --no-setuptools/--no-wheel.
"""
import ensurepip
import subprocess
import sys


def main(argv):
    args = [a for a in argv if a not in ("--no-setuptools", "--no-wheel")]
    ensurepip.bootstrap(upgrade=True)
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)


if __name__ == "__main__":
    main(sys.argv[1:])
