"""hybrid local serve: the embedded AWS (moto + the compatibility layer) for trying the toolkit without an account."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    local = typer.Typer(help="The embedded AWS on this machine (no account needed).", no_args_is_help=True)
    app.add_typer(local, name="local")

    @local.command("serve")
    def serve_cmd(
        port: int = typer.Option(0, "--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)."),
        enforce_iam: bool = typer.Option(
            False, "--enforce-iam", help="Check every request's IAM policy (prints an admin user's keys)."
        ),
        region: str = typer.Option("us-east-1", "--region", help="Region the printed environment selects."),
    ) -> None:
        """Serve the embedded AWS on 127.0.0.1; line 1 is its URL, then the environment to export."""
        from toolkit.local.serve import serve

        raise typer.Exit(serve(port=port, region=region, enforce=enforce_iam))
