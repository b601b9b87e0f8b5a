"""Packaging for vesyncd, a local controller for Etekcity / VeSync Voltson plugs."""

import re
from pathlib import Path

from setuptools import find_packages, setup

_version = re.search(
    r'^__version__ = "([^"]+)"',
    (Path(__file__).parent / "vesyncd" / "__init__.py").read_text(),
    re.M,
).group(1)

setup(
    name="vesyncd",
    version=_version,
    description="Local replacement for the VeSync cloud for Etekcity Voltson Wi-Fi plugs",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(exclude=["tests", "tests.*", "bench", "bench.*"])
    + ["twisted.plugins"],
    package_data={"vesyncd": ["web/static/*", "web/static/**/*"]},
    include_package_data=True,
    install_requires=[
        "Twisted[tls]>=24.3.0",
        "autobahn[twisted]>=23.6.1",
        "dnslib>=0.9.24",
        "service_identity>=24.1.0",
        "pyOpenSSL>=24.0.0",
        "cryptography>=42.0.0",
        "zope.interface>=6.0",
        "paho-mqtt>=2.0",
        "prometheus-client>=0.20.0",
        "pycountry>=22.3",
        "astral>=3.2",
        "shtab>=1.7",
        "psycopg[binary]>=3.1",
        "psycopg-pool>=3.2",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "hypothesis>=6.100",
            "selenium>=4.11",
            "websockets>=12.0",
            "jinja2>=3.1",  # renders the Home Assistant templates of the MQTT discovery payloads
        ],
        "bench": [
            "websockets>=12.0",
            "py-spy>=0.3.14",
            "uvloop>=0.19",
        ],
    },
    entry_points={
        "console_scripts": [
            "vesyncd-sim = vesyncd.sim.main:main",
            "vesyncctl = vesyncd.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Home Automation",
    ],
)
