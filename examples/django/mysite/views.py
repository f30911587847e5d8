import hashlib
import os

from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt


def index(request):
    """A template view: shows where the app is mounted and a form to upload a file."""
    return render(
        request,
        "mysite/index.html",
        {
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "path_info": request.path_info,
            "pid": os.getpid(),
        },
    )


def info(request):
    """How Django sees the request: SCRIPT_NAME and the URLs it builds from it."""
    return JsonResponse(
        {
            "script_name": request.META.get("SCRIPT_NAME"),
            "path": request.path,
            "path_info": request.path_info,
            "reverse_index": reverse("index"),
            "reverse_upload": reverse("upload"),
            "reverse_admin": reverse("admin:index"),
            "absolute_upload": request.build_absolute_uri(reverse("upload")),
            "static_admin_css": static("admin/css/base.css"),
            "is_secure": request.is_secure(),
            "pid": os.getpid(),
        }
    )


@csrf_exempt
def upload(request):
    """Accepts an upload and reports its size and SHA-256.

    A multipart form reports each file; any other body (e.g. a raw chunked PUT/POST) is
    reported as a whole. csrf_exempt so that curl and scripts can post to it directly.
    """
    if request.method not in ("POST", "PUT"):
        return HttpResponseNotAllowed(["POST", "PUT"])
    result = {
        "content_length": request.META.get("CONTENT_LENGTH"),
        "content_type": request.META.get("CONTENT_TYPE"),
        "transfer_encoding": request.META.get("HTTP_TRANSFER_ENCODING"),
    }
    if request.content_type == "multipart/form-data":
        files = []
        for field, uploaded in request.FILES.items():
            digest = hashlib.sha256()
            for chunk in uploaded.chunks():
                digest.update(chunk)
            files.append(
                {
                    "field": field,
                    "name": uploaded.name,
                    "size": uploaded.size,
                    "sha256": digest.hexdigest(),
                }
            )
        result["files"] = files
        result["size"] = sum(f["size"] for f in files)
    else:
        body = request.body
        result["size"] = len(body)
        result["sha256"] = hashlib.sha256(body).hexdigest()
    return JsonResponse(result)
