"""``python -m service.cli``: the ``qinglang`` command."""

from service.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
