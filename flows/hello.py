"""hello: three steps, no outside system. The quick start and `hub doctor` use it.

hub run hello --input '{"name": "Ada"}' --wait
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from hub import Flow, StepContext, step


class Person(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="Who to greet.")


class Cleaned(BaseModel):
    name: str
    letters: int


class Greeting(BaseModel):
    message: str
    letters: int


@step
def clean(data: Person) -> Cleaned:
    """Trim and title-case the name."""
    name = " ".join(data.name.split()).title()
    return Cleaned(name=name, letters=sum(c.isalpha() for c in name))


@step
def greet(data: Cleaned) -> Greeting:
    """Build the greeting."""
    return Greeting(message=f"Hello, {data.name}!", letters=data.letters)


@step
def sign(ctx: StepContext, data: Greeting) -> Greeting:
    """Sign the greeting with the run id, so each run's output is its own."""
    return Greeting(message=f"{data.message} (run {ctx.run_id[-6:]})", letters=data.letters)


hello = Flow("hello", [clean, greet, sign], description="Greets a person by name.")
