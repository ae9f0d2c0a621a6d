"""Command-line interface: ``longssm <command>``, a thin argparse layer over the library."""
