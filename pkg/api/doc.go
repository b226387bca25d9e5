// Package api holds the wire types of metal-api's REST interface: the domain entities, the request
// bodies of actions and the JSON error shape. It imports the standard library only, so every
// component (hammer, boot-server, agents, controllers) can share it without pulling dependencies.
package api
