"""The chat tests' fixtures, for the tests here that send through the services and sockets."""

from conversations.tests.conftest import _fresh_channel_layer, _fresh_rate_limits, fake_llm  # noqa: F401
