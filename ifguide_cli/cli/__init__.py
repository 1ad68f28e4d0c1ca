"""Thin Typer layer: parse, call the core, render. Heavy imports happen inside commands."""
