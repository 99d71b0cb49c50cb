"""``python -m leadsq_async.cli``: the same as the ``leadsq-async`` command."""

from leadsq_async.cli import main

if __name__ == "__main__":
    main()
