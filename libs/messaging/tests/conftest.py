import sys
from pathlib import Path

# The probe service lives beside the tests; make it importable here and in subprocesses.
sys.path.insert(0, str(Path(__file__).parent))
