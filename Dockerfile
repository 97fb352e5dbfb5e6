# One image for every process kind; compose.yaml picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/inbox
COPY pyproject.toml requirements.lock README.md ./
COPY domain domain
COPY projections projections
COPY adapters adapters
COPY app app
COPY migrations migrations
# Exactly the versions the tests passed with (./dev lock), then the project without resolving.
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && pip install --no-cache-dir --no-deps -e . && useradd --system --uid 10001 inbox
USER inbox
ENV INBOX_HTTP_HOST=0.0.0.0 INBOX_MIGRATIONS_DIR=/srv/inbox/migrations
EXPOSE 8000
ENTRYPOINT ["inbox"]
CMD ["api"]
