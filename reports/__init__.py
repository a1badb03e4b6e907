"""Builders for self-contained HTML reports with inline SVG charts (`html`, standard library only), and strict
JSON for the records they are made from (`json_safe`)."""
