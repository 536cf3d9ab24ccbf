"""Span attribute names: the OpenTelemetry GenAI semantic conventions, and pilothouse's own.

The GenAI names come from ``opentelemetry-semantic-conventions`` (its incubating GenAI
attributes); ours carry the ``pilothouse.`` prefix and describe the routing decision.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes, server_attributes

OPERATION = gen_ai.GEN_AI_OPERATION_NAME
PROVIDER = gen_ai.GEN_AI_PROVIDER_NAME
REQUEST_MODEL = gen_ai.GEN_AI_REQUEST_MODEL
REQUEST_MAX_TOKENS = gen_ai.GEN_AI_REQUEST_MAX_TOKENS
RESPONSE_MODEL = gen_ai.GEN_AI_RESPONSE_MODEL
RESPONSE_FINISH_REASONS = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
TIME_TO_FIRST_CHUNK = gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
INPUT_TOKENS = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
CACHE_READ_TOKENS = gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
TOOL_NAME = gen_ai.GEN_AI_TOOL_NAME
TOOL_CALL_ID = gen_ai.GEN_AI_TOOL_CALL_ID
AGENT_NAME = gen_ai.GEN_AI_AGENT_NAME
AGENT_ID = gen_ai.GEN_AI_AGENT_ID
CONVERSATION_ID = gen_ai.GEN_AI_CONVERSATION_ID
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT
ERROR_TYPE = error_attributes.ERROR_TYPE

CHAT = gen_ai.GenAiOperationNameValues.CHAT.value
TEXT_COMPLETION = gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value
EMBEDDINGS = gen_ai.GenAiOperationNameValues.EMBEDDINGS.value
EXECUTE_TOOL = gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value
INVOKE_AGENT = gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value

#: ``gen_ai.operation.name`` by OpenAI route path; any other route is a chat.
OPERATION_BY_PATH = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": TEXT_COMPLETION,
    "/v1/embeddings": EMBEDDINGS,
}

# -- the routing decision ----------------------------------------------------------------
PROFILE = "pilothouse.profile"
"""The scheduling profile whose pick was used."""
ENDPOINT = "pilothouse.endpoint"
"""The picked replica's name (``server.address`` / ``server.port``: where it listens)."""
ENDPOINT_SCORE = "pilothouse.endpoint.score"
"""The picked replica's total weighted score."""
RUNNER_UP = "pilothouse.runner_up"
RUNNER_UP_SCORE = "pilothouse.runner_up.score"
CANDIDATES = "pilothouse.candidates"
"""Replicas the decision chose among."""
SCORER_PREFIX = "pilothouse.endpoint.scorer."
"""``pilothouse.endpoint.scorer.<name>``: one scorer's value in [0, 1] for the pick."""
RUNNER_UP_SCORER_PREFIX = "pilothouse.runner_up.scorer."
PREFIX_MATCH = "pilothouse.prefix_match"
"""Estimated share of the prompt the picked replica holds in its prefix cache."""
CACHED_TOKENS = "pilothouse.cached_tokens"
"""Prompt tokens the decision estimated the picked replica already holds."""
QUEUE_WAIT_MS = "pilothouse.queue_wait_ms"
"""Time spent held (no ready replica) or queued by flow control before the decision."""
TENANT = "pilothouse.tenant"
PRIORITY = "pilothouse.priority"
PUBLIC_MODEL = "pilothouse.public_model"
"""The traffic split's public name when the request named one."""
REQUEST_ID = "pilothouse.request_id"
ATTEMPTS = "pilothouse.attempts"
"""Replicas the request was sent to (more than one: retried elsewhere)."""
STATUS = "http.response.status_code"

# -- tools --------------------------------------------------------------------------------
TOOL_SERVER = "pilothouse.tool.server"
TOOL_DECISION = "pilothouse.tool.decision"
TOOL_RULE = "pilothouse.tool.rule"
"""The policy or rule that decided (a Cedar policy id, ``pinning``, ``taint``, ...)."""
TOOL_UPSTREAM_NAME = "pilothouse.tool.upstream_name"
"""The tool's name on its server (``gen_ai.tool.name`` is the federated one)."""
TOOL_APPROVAL = "pilothouse.tool.approval_id"
