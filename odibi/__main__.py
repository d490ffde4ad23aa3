from odibi.cli.main import entry

entry()
