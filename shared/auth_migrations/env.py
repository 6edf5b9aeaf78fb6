from shared.alembic_env import run_env
from shared.apikeys import AuthBase

run_env(AuthBase.metadata)
