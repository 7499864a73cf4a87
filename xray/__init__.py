"""xray: AI analysis of cargo X-ray scans.

The flow of one scan: sources -> scan -> engine -> verifier -> service.
"""

__version__ = "0.1.0"
