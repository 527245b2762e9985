"""A first real container through the installed command: the fixtures themselves work."""


def test_run_prints_output_and_returns_exit_code(ocirt, make_bundle):
    bundle = make_bundle(["sh", "-c", "echo hello; exit 3"])
    result = ocirt.run(bundle)
    assert result.stdout == "hello\n"
    assert result.returncode == 3
    assert ocirt.ids() == []
