"""The shipped search spaces: ``samplernn-tune --space=NAME`` reads NAME.py here."""
