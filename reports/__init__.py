"""Dependency-free builders for self-contained HTML reports with inline SVG charts."""
