"""Entry point: `python app.py` serves the UI (also the Hugging Face Space entry);
`python app.py --help` lists the command-line verbs."""
import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
