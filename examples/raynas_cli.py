"""``raynas`` as a script, for ``ray submit`` (which runs a Python file on the head node):

    ray submit examples/cluster.yaml examples/raynas_cli.py search --address auto --checkpoint ...

Everything after the script's name goes to the ``raynas`` command line."""
import sys

from raynas.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
