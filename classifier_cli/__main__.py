"""``python -m classifier_cli``: the same as the ``classify`` console script."""

from classifier_cli.main import main

main()
