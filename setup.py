"""Maps the repository's card folders into the installed package as ``oodbench.cards.*`` (no second copy;
read through ``oodbench.paths.card_folder``)."""
from setuptools import find_packages, setup

CARDS = {"oodbench.cards.methods": "methods", "oodbench.cards.datasets": "datasets",
         "oodbench.cards.paper": "leaderboard/paper"}

setup(packages=find_packages(include=["oodbench", "oodbench.*"]) + list(CARDS),
      package_dir=CARDS,
      package_data={"oodbench.cards.methods": ["*.toml", "networks/*.toml"], "oodbench.cards.datasets": ["*.toml"],
                    "oodbench.cards.paper": ["*.toml"],
                    "oodbench.leaderboard": ["record.schema.json", "page.html", "page.css", "page.js"]})
