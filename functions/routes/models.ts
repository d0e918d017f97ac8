/**
 * GET /v1/models: the one model served, in OpenAI's list shape with the fields Mistral's and Anthropic's clients
 * read (a card's `type` is Mistral's "base": Anthropic's clients, which would find "model", do not check it).
 */
import { Hono } from "hono";
import type { Service } from "../service.ts";
import { requireModel } from "./common.ts";

/** Whether requests may carry tools: Mistral's own prompt format with its tool tokens (no chat template). */
function functionCalling(service: Service): boolean {
  if (service.chatTemplate) return false;
  try {
    service.tokenizer.special("[TOOL_CALLS]");
    return true;
  } catch {
    return false;
  }
}

function card(service: Service) {
  const { model, engine, images } = service;
  return {
    id: model.id,
    object: "model",
    created: model.created,
    owned_by: "pixtral-server",
    type: "base",
    name: model.id,
    description: model.description,
    aliases: model.aliases,
    max_context_length: engine?.contextLength ?? null,
    // vLLM's name for it.
    max_model_len: engine?.contextLength ?? null,
    capabilities: {
      completion_chat: true,
      completion_fim: false,
      function_calling: functionCalling(service),
      fine_tuning: false,
      vision: images.enabled,
    },
    deprecation: null,
    demo: model.demo,
    // Anthropic's.
    display_name: model.id,
    created_at: new Date(model.created * 1000).toISOString(),
  };
}

export function modelRoutes(service: Service): Hono {
  return new Hono()
    .get("/v1/models", (c) => {
      const id = service.model.id;
      // One page: Anthropic's list fields say so.
      return c.json({ object: "list", data: [card(service)], has_more: false, first_id: id, last_id: id });
    })
    // Ids may contain "/" (hf:ORG/REPO models), which clients send unencoded.
    .get("/v1/models/:id{.+}", (c) => {
      requireModel(service, c.req.param("id"));
      return c.json(card(service));
    });
}
