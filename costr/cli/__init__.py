"""The `costr` command line: argparse commands, each a thin shell over the part it drives; may import any part."""
