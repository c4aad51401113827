from datetime import date, datetime, time
from typing import Any, TypeVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db.models import Count, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from pool.backends import get_backend
from pool.backends.base import BackendError
from pool.materials_files import ARCHIVE_SUFFIXES, MaterialsError
from pool.models import Collection, Container, Event, Pool, QueueEntry, Schedule, Session, Snapshot, Workshop, WorkshopPool
from pool.services import broadcasts, collecting, ending, events, materials, pools, workshops
from pool.views import zip_download

M = TypeVar("M", bound=Model)


class ScheduleInline(admin.TabularInline[Schedule, Pool]):
    """Sizes planned ahead; beat applies each one once, at its time (see README)."""

    model = Schedule
    fields = ["at", "capacity", "ready_target", "applied_at"]
    readonly_fields = ["applied_at"]
    extra = 1


class PoolForm(forms.ModelForm[Pool]):
    materials_upload = forms.FileField(
        required=False,
        label="Upload materials",
        help_text="A zip or tar.gz archive of the workshop's files; it replaces the materials source below.",
    )

    class Meta:
        model = Pool
        fields = "__all__"

    def clean_materials_upload(self) -> UploadedFile | None:
        upload = self.cleaned_data["materials_upload"]
        if upload is None:
            return None
        if not upload.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise forms.ValidationError(f"{upload.name} is not an archive: upload a file ending in {', '.join(ARCHIVE_SUFFIXES)}.")
        if upload.size > settings.TMPNB_MATERIALS_MAX_MB * 1_000_000:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size / 1_000_000:.1f} MB, over the {settings.TMPNB_MATERIALS_MAX_MB} MB that TMPNB_MATERIALS_MAX_MB allows."
            )
        return upload

    def clean_image(self) -> str:
        image = self.cleaned_data["image"]
        try:
            present = get_backend().image_exists(image)
        except BackendError as error:
            raise forms.ValidationError(f"The backend cannot be asked whether {image} exists: {error}") from None
        if not present:
            raise forms.ValidationError(f"The image {image} is not on this host; build or load it first (it is never pulled).")
        return image


class BroadcastForm(forms.Form):
    upload = forms.FileField(label="File to send")
    unpack = forms.BooleanField(
        required=False,
        initial=True,
        label="A zip or tar.gz of a folder: send the folder",
        help_text="Unticked, an archive is sent as the file it is.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("upload")
        if upload is not None and upload.size > settings.TMPNB_MATERIALS_MAX_MB * 1_000_000:
            raise forms.ValidationError(
                f"{upload.name} is {upload.size / 1_000_000:.1f} MB, over the {settings.TMPNB_MATERIALS_MAX_MB} MB that TMPNB_MATERIALS_MAX_MB allows."
            )
        data["unpack"] = data.get("unpack") and upload is not None and upload.name.lower().endswith(ARCHIVE_SUFFIXES)
        return data


# How long the broadcast page waits for the worker to hand out what was sent,
# so that its message says how far it reached; beyond, the event log says it.
BROADCAST_WAIT = 5.0


def broadcast_page(model_admin: admin.ModelAdmin[Any], request: HttpRequest, *, target: Model, pools: list[Pool], to: SafeString) -> HttpResponse:
    """The upload page that sends a file or folder to ``pools`` (a pool's, or a
    workshop's ``target``), then says in one message how far it reached in each."""
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    form = BroadcastForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            sent = broadcasts.broadcast_upload_to(pools, upload=form.cleaned_data["upload"], by=request.user.get_username(), unpack=form.cleaned_data["unpack"])
        except MaterialsError as error:
            form.add_error(None, str(error))
        else:
            handed = broadcasts.wait_until_handed(sent, timeout=BROADCAST_WAIT)
            failed = any(each.failed or each.handed_at is None for each in handed)
            model_admin.message_user(request, " ".join(broadcasts.how_far(each) for each in handed), messages.WARNING if failed else messages.SUCCESS)
            return redirect(f"admin:pool_{target._meta.model_name}_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Broadcast to {target}",
        "opts": target._meta,
        "target": target,
        "to": to,
        "form": form,
        "max_mb": settings.TMPNB_MATERIALS_MAX_MB,
    }
    return TemplateResponse(request, "admin/pool/broadcast.html", context)


def _per_pool(rows: QuerySet[Any]) -> Coalesce:
    """How many of ``rows`` each pool has, counted by a subquery on their
    indexes. (Joining the containers and the queue multiplied their rows:
    with 2,000 past visitors of a pool its list page took 2.8 s of CPU, and
    the time grew with the square of its history.)"""
    counted = rows.filter(pool=OuterRef("pk")).order_by().values("pool").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


@admin.register(Pool)
class PoolAdmin(admin.ModelAdmin[Pool]):
    form = PoolForm
    list_display = [
        "name",
        "image",
        "capacity",
        "ready_target",
        "ready",
        "in_use",
        "starting",
        "waiting",
        "spawning",
        "spread",
        "materials_status",
    ]
    readonly_fields = ["spawning", "spread", "materials_status"]
    actions = ["drain", "resume", "refresh_materials", "broadcast", "collect_work"]
    inlines = [ScheduleInline]
    fieldsets = [
        (None, {"fields": ["name", "image", "command", "capacity", "ready_target", "redirect_uri", "spawning", "spread"]}),
        ("Visitors", {"fields": ["access_code", "live_help"]}),
        ("Materials", {"fields": ["materials_upload", "materials_source", "materials_branch", "materials_status"]}),
        ("Culling", {"fields": ["cull_timeout", "cull_max"]}),
        (
            "Container options",
            {
                "fields": [
                    "mem_limit",
                    "cpu_shares",
                    "cpu_quota",
                    "container_user",
                    "container_ip",
                    "container_port",
                    "host_network",
                    "docker_network",
                    "internal_network",
                    "host_directories",
                    "extra_hosts",
                    "use_tokens",
                    "user_length",
                ]
            },
        ),
    ]

    @admin.display(description="spawning")
    def spawning(self, pool: Pool) -> str:
        if pool.paused_reason:
            return f"PAUSED: {pool.paused_reason}"
        if pool.awaiting_materials:
            return "waiting for its materials to be prepared"
        if pool.spawning_blocked(timezone.now()):
            return f"backing off after {pool.failure_streak} failure(s), until {localtime(pool.next_spawn_at):%H:%M:%S}"
        return "ok"

    @admin.display(description="containers per node")
    def spread(self, pool: Pool) -> str:
        if pool.pk is None:
            return ""  # the add form
        return ", ".join(f"{node or '(starting)'}: {n}" for node, n in pool.containers.live().spread())

    @admin.display(description="materials")
    def materials_status(self, pool: Pool) -> str:
        prepared = (
            "none"
            if not pool.materials_version
            else (f"version {pool.materials_version}, prepared {localtime(pool.materials_prepared_at):%Y-%m-%d %H:%M:%S}: {pool.materials_summary}")
        )
        if pool.materials_wanted != pool.materials_tried or pool.materials_preparing_since or pool.awaiting_materials:
            return f"preparing... Current: {prepared}"
        if pool.materials_error:
            return f"REFUSED: {pool.materials_error}. Keeping: {prepared}"
        return prepared

    @admin.action(description="Prepare the materials again (fetch the git repository anew)")
    def refresh_materials(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        for pool in queryset:
            materials.refresh_materials(pool)
        self.message_user(request, "The materials are prepared again; ready containers are then replaced.", messages.SUCCESS)

    @admin.action(description="Broadcast a file or folder to every notebook")
    def broadcast(self, request: HttpRequest, queryset: QuerySet[Pool]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose one pool to broadcast to.", messages.ERROR)
            return None
        return redirect("admin:pool_pool_broadcast", queryset.get().pk)

    def get_urls(self) -> list[URLPattern]:
        broadcast = self.admin_site.admin_view(self.broadcast_view)
        return [path("<int:pool_id>/broadcast/", broadcast, name="pool_pool_broadcast"), *super().get_urls()]

    def broadcast_view(self, request: HttpRequest, pool_id: int) -> HttpResponse:
        pool = get_object_or_404(Pool, pk=pool_id)
        return broadcast_page(self, request, target=pool, pools=[pool], to=format_html("pool <b>{}</b>", pool.name))

    @admin.action(description="Collect everyone's work now, into one zip (nothing ends)")
    def collect_work(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        for pool in queryset:
            collecting.ask_for_collection(pool=pool, by=request.user.get_username())
        url = reverse("admin:pool_collection_changelist")
        self.message_user(
            request, format_html('The work is being collected; the zip will be listed under <a href="{}">Collections</a>.', url), messages.SUCCESS
        )

    @admin.action(description="Resume spawning (after fixing what made it fail)")
    def resume(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        for pool in queryset:
            pools.resume_spawning(pool)
        self.message_user(request, "Spawning resumed.", messages.SUCCESS)

    @admin.action(description="Drain: replace every container not in use (after changing the image)")
    def drain(self, request: HttpRequest, queryset: QuerySet[Pool]) -> None:
        drained = sum(pools.drain_pool(pool, by=request.user.get_username()) for pool in queryset)
        self.message_user(request, f"Replacing {drained} container(s); containers in use keep running.", messages.SUCCESS)

    def save_model(self, request: HttpRequest, pool: Pool, form: forms.ModelForm[Pool], change: bool) -> None:
        # A new size goes through resize_pool, which logs who changed it.
        if change and {"capacity", "ready_target"} & set(form.changed_data):
            pools.resize_pool(pool, pool.capacity, ready_target=pool.ready_target, by=request.user.get_username())
        if form.cleaned_data.get("materials_upload"):
            pool.materials_source, pool.materials_branch = materials.store_upload(form.cleaned_data["materials_upload"]), ""
        super().save_model(request, pool, form, change)
        if change and pool.paused_reason:
            pools.resume_spawning(pool)  # the organiser changed what failed

    def get_queryset(self, request: HttpRequest) -> QuerySet[Pool]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                ready_count=_per_pool(Container.objects.ready()),
                in_use_count=_per_pool(Container.objects.assigned()),
                starting_count=_per_pool(Container.objects.spawning()),
                waiting_count=_per_pool(QueueEntry.objects.waiting()),
            )
        )

    @admin.display(ordering="ready_count")
    def ready(self, pool: Any) -> int:  # annotated by get_queryset
        return pool.ready_count

    @admin.display(ordering="in_use_count")
    def in_use(self, pool: Any) -> int:
        return pool.in_use_count

    @admin.display(ordering="starting_count")
    def starting(self, pool: Any) -> int:
        return pool.starting_count

    @admin.display(ordering="waiting_count", description="waiting visitors")
    def waiting(self, pool: Any) -> int:
        return pool.waiting_count


class RecordAdmin(admin.ModelAdmin[M]):
    """Rows the service itself writes: shown, never added, edited or deleted
    by hand. A live container or session ends through the kill action (the
    services stop the container and delete its route); a deleted one would
    leave its container running, assigned to nobody and never culled. The
    history goes after TMPNB_HISTORY_DAYS (retention), and the dashboard and
    /metrics count from it."""

    def get_readonly_fields(self, request: HttpRequest, obj: M | None = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: M | None = None) -> bool:
        return False


@admin.register(Container)
class ContainerAdmin(RecordAdmin[Container]):
    list_display = [
        "name",
        "pool",
        "state",
        "node",
        "base_path",
        "host_port",
        "materials_version",
        "created_at",
        "ready_at",
        "assigned_at",
    ]
    list_filter = ["state", "pool", "node"]
    search_fields = ["name", "path_id", "backend_id"]
    actions = ["kill"]

    @admin.action(description="Kill: stop and remove the container, end its session")
    def kill(self, request: HttpRequest, queryset: QuerySet[Container]) -> None:
        count = ending.kill_containers(queryset.select_related("pool"), by=request.user.get_username(), on_worker=True)
        self.message_user(request, f"Killed {count} container(s).", messages.SUCCESS)


@admin.register(QueueEntry)
class QueueEntryAdmin(RecordAdmin[QueueEntry]):
    list_display = ["visitor", "pool", "client_ip", "joined_at", "last_seen", "served_at", "left_at"]
    list_filter = ["pool", ("served_at", admin.EmptyFieldListFilter), ("left_at", admin.EmptyFieldListFilter)]


@admin.register(Session)
class SessionAdmin(RecordAdmin[Session]):
    list_display = ["visitor", "container", "client_ip", "started_at", "waited", "last_activity", "ended_at", "ended"]
    list_filter = [("ended_at", admin.EmptyFieldListFilter), "end_reason"]
    search_fields = ["visitor", "display_name", "container__name", "container__path_id"]
    actions = ["kill"]

    @admin.display(description="how it ended")
    def ended(self, session: Session) -> str:
        return session.describe_end() if session.ended_at else ""

    def get_readonly_fields(self, request: HttpRequest, obj: Session | None = None) -> list[str]:
        # The resume code reaches the holder's own pages only, not the organisers'.
        shown = [name for name in super().get_readonly_fields(request, obj) if not name.startswith("resume_")]
        return [*shown, "saved_work"]

    def get_urls(self) -> list[URLPattern]:
        download = self.admin_site.admin_view(self.download_work)
        return [path("<int:session_id>/work.zip", download, name="pool_session_work"), *super().get_urls()]

    @admin.display(description="saved work")
    def saved_work(self, session: Session) -> str | SafeString:
        snapshot = Snapshot.objects.filter(session=session).first()
        if snapshot is None:
            return "none (the session is live, or its container stopped on its own)" if session.ended_at else "none yet"
        if snapshot.taken_at is None:
            return "being saved"
        left_out = f"; {snapshot.left_out_count} file(s) left out" if snapshot.left_out_count else ""
        summary = f"{snapshot.file_count} file(s), {snapshot.size} bytes{left_out}"
        if snapshot.is_kept(timezone.now()):
            url = reverse("admin:pool_session_work", args=[session.pk])
            return format_html('<a href="{}">Download the zip</a> ({}, kept until {})', url, summary, localtime(snapshot.expires_at))
        return f"{'deleted after its hours' if snapshot.file_count else 'not saved'} ({snapshot.error or summary})"

    def download_work(self, request: HttpRequest, session_id: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        snapshot = Snapshot.objects.kept(timezone.now()).filter(session_id=session_id).select_related("session__container__pool").first()
        if snapshot is None:
            raise Http404("no saved work")
        return zip_download(snapshot)

    @admin.action(description="Kill: end the session, stop and remove its container")
    def kill(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        count = ending.kill_sessions(queryset.select_related("container__pool"), by=request.user.get_username(), on_worker=True)
        self.message_user(request, f"Killed {count} session(s).", messages.SUCCESS)


def collection_zip(collection: Collection) -> str:
    """A collection's zip: its download link while kept, else what became of it."""
    if collection.taken_at is None:
        return "being collected"
    if collection.is_kept(timezone.now()):
        url = reverse("admin:pool_collection_zip", args=[collection.pk])
        return format_html('<a href="{}">Download</a> ({} bytes, kept until {})', url, collection.size, localtime(collection.expires_at))
    return collection.error or "deleted after its hours"


@admin.register(Collection)
class CollectionAdmin(RecordAdmin[Collection]):
    list_display = ["started_at", "work_of", "by", "participants", "incomplete", "zip"]
    list_filter = ["pool"]
    list_select_related = ["pool", "workshop"]

    def get_urls(self) -> list[URLPattern]:
        download = self.admin_site.admin_view(self.download)
        return [path("<int:collection_id>/work.zip", download, name="pool_collection_zip"), *super().get_urls()]

    @admin.display(description="zip")
    def zip(self, collection: Collection) -> str:
        return collection_zip(collection)

    @admin.display(description="work of", ordering="pool__name")
    def work_of(self, collection: Collection) -> str:
        return f"workshop {collection.workshop} (all its pools)" if collection.workshop else f"pool {collection.pool}"

    def download(self, request: HttpRequest, collection_id: int) -> FileResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        collection = Collection.objects.kept(timezone.now()).filter(pk=collection_id).select_related("pool", "workshop").first()
        if collection is None:
            raise Http404("no such collection")
        try:
            work = open(collecting.collection_path(collection), "rb")
        except FileNotFoundError:  # pruned just now
            raise Http404("no such file") from None
        of = collection.workshop.name if collection.workshop else collection.pool.name
        name = f"work-{of}-{localtime(collection.started_at):%Y%m%d-%H%M}.zip"
        return FileResponse(work, as_attachment=True, filename=name, content_type="application/zip")


@admin.register(Event)
class EventAdmin(RecordAdmin[Event]):
    list_display = ["time", "kind", "pool", "actor", "message"]
    list_filter = ["kind", "pool", ("time", admin.DateFieldListFilter)]
    date_hierarchy = "time"
    search_fields = ["message", "actor", "container__name"]
    actions = ["export_csv"]

    def has_change_permission(self, request: HttpRequest, obj: Event | None = None) -> bool:
        return False  # a log that can be edited is no record (and /metrics counts from it)

    @admin.action(description="Export the selected events as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Event]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="tmpnb-events-{timezone.now():%Y%m%d-%H%M%S}.csv"'
        events.write_events_csv(queryset, response)
        return response


class WallClockField(forms.SplitDateTimeField):
    """A date and a time as typed, without a zone: the form reads them in the
    workshop's time zone (Django's own field reads them in TMPNB_TIME_ZONE)."""

    def compress(self, data_list: tuple[date, time] | None) -> datetime | None:
        return datetime.combine(*data_list) if data_list else None


class WorkshopForm(forms.ModelForm[Workshop]):
    """Start and end are typed, and shown, in the workshop's own time zone."""

    class Meta:
        help_texts = {"time_zone": "The organiser's, such as Europe/Paris: the start and the end are typed and shown in it."}

    starts_at = WallClockField(widget=widgets.AdminSplitDateTime, help_text="When the landing opens, in the workshop's time zone.")
    ends_at = WallClockField(
        widget=widgets.AdminSplitDateTime, help_text="When the participants are warned that their notebooks end, in the workshop's time zone."
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for field in ("starts_at", "ends_at"):
                self.initial[field] = self.instance.local(getattr(self.instance, field)).replace(tzinfo=None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("time_zone"):  # else its own error says why, and nothing is saved
            for field in ("starts_at", "ends_at"):
                if data.get(field) is not None:
                    try:
                        data[field] = workshops.in_time_zone(data[field], data["time_zone"])
                    except ValueError as error:
                        self.add_error(field, str(error))
        if data.get("starts_at") is not None and data.get("ends_at") is not None and data["ends_at"] <= data["starts_at"]:
            self.add_error("ends_at", "The end must come after the start.")
        return data


class SeatsFormSet(forms.BaseInlineFormSet[WorkshopPool, Workshop, forms.ModelForm[WorkshopPool]]):
    """A workshop's pools: at least one, and no more notebooks over all of them than this machine holds."""

    def clean(self) -> None:
        super().clean()
        kept = [form.cleaned_data for form in self.forms if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        if not kept:
            raise forms.ValidationError("A workshop needs at least one pool, with the participants expected on it.")
        if problem := workshops.headcount_problem(sum(seat.get("headcount") or 0 for seat in kept)):
            raise forms.ValidationError(problem)


class WorkshopPoolInline(admin.TabularInline[WorkshopPool, Workshop]):
    """Its pools, each with the participants expected on it (a Python pool and an R pool, say)."""

    model = WorkshopPool
    formset = SeatsFormSet
    fields = ["pool", "headcount"]
    extra = 1
    min_num = 1
    verbose_name = "pool"
    verbose_name_plural = "pools, with the participants expected on each"


@admin.register(Workshop)
class WorkshopAdmin(admin.ModelAdmin[Workshop]):
    """A workshop from start to end (README "Running a workshop"); the rules are in pool/services/workshops.py."""

    form = WorkshopForm
    inlines = [WorkshopPoolInline]
    list_display = ["name", "pools_and_headcounts", "state", "starts", "ends", "numbers"]
    list_filter = ["pools"]
    fields = ["name", "time_zone", "starts_at", "ends_at", "keep_minutes", "materials_source", "access_code", "language", "at_a_glance"]
    readonly_fields = ["at_a_glance"]
    actions = ["broadcast", "collect_work"]

    @admin.action(description="Broadcast to this workshop (a file or folder to every notebook of its pools)")
    def broadcast(self, request: HttpRequest, queryset: QuerySet[Workshop]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Choose one workshop to broadcast to.", messages.ERROR)
            return None
        return redirect("admin:pool_workshop_broadcast", queryset.get().pk)

    def get_urls(self) -> list[URLPattern]:
        broadcast = self.admin_site.admin_view(self.broadcast_view)
        return [path("<int:workshop_id>/broadcast/", broadcast, name="pool_workshop_broadcast"), *super().get_urls()]

    def broadcast_view(self, request: HttpRequest, workshop_id: int) -> HttpResponse:
        workshop = get_object_or_404(Workshop, pk=workshop_id)
        pools = list(workshop.pools.order_by("name"))
        names = format_html_join(", ", "<b>{}</b>", ((pool.name,) for pool in pools))
        return broadcast_page(
            self, request, target=workshop, pools=pools, to=format_html("workshop <b>{}</b>, in each of its pools ({})", workshop.name, names)
        )

    @admin.action(description="Collect work now, into one zip across its pools (nothing ends)")
    def collect_work(self, request: HttpRequest, queryset: QuerySet[Workshop]) -> None:
        asked = 0
        for workshop in queryset:
            try:
                collecting.ask_for_collection(workshop=workshop, by=request.user.get_username())
                asked += 1
            except collecting.CollectionError as error:
                self.message_user(request, str(error), messages.ERROR)
        if not asked:
            return
        url = reverse("admin:pool_collection_changelist")
        self.message_user(
            request, format_html('The work is being collected; the zip will be listed under <a href="{}">Collections</a>.', url), messages.SUCCESS
        )

    def save_model(self, request: HttpRequest, workshop: Workshop, form: forms.ModelForm[Workshop], change: bool) -> None:
        workshop.save()  # planned once its pools are saved too (save_related), in the admin's one transaction

    def save_related(self, request: HttpRequest, form: forms.ModelForm[Workshop], formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        workshops.plan_workshop(form.instance, by=request.user.get_username())  # the forms checked its numbers already

    @admin.display(description="pools (headcount)")
    def pools_and_headcounts(self, workshop: Workshop) -> str:
        return ", ".join(f"{seat.pool.name} ({seat.headcount})" for seat in workshop.seats_by_pool())

    @admin.display(description="state")
    def state(self, workshop: Workshop) -> str:
        return workshop.state(timezone.now())

    @admin.display(description="starts (organiser's time)", ordering="starts_at")
    def starts(self, workshop: Workshop) -> str:
        return f"{workshop.local(workshop.starts_at):%Y-%m-%d %H:%M} {workshop.time_zone}"

    @admin.display(description="ends (organiser's time)")
    def ends(self, workshop: Workshop) -> str:
        return f"{workshop.local(workshop.ends_at):%Y-%m-%d %H:%M} {workshop.time_zone}"

    @admin.display(description="ready / in use / queue")
    def numbers(self, workshop: Workshop) -> str:
        glance = workshops.glance(workshop)
        return f"{glance.ready} / {glance.in_use} / {glance.queued}"

    @admin.display(description="at a glance")
    def at_a_glance(self, workshop: Workshop) -> SafeString | str:
        if workshop.pk is None:
            return "Saved, it warms each pool before the start by as much as the slowest pool's measured fill needs."
        glance = workshops.glance(workshop)
        each_pool = format_html_join(
            "",
            '<li>{}: headcount {}: {} ready, {} in use, {} starting; {} in the queue. <a href="{}">The room</a></li>',
            (
                (each.pool.name, each.headcount, each.ready, each.in_use, each.starting, each.queued, reverse("admin:room", args=[each.pool.pk]))
                for each in glance.pools
            ),
        )
        collections = format_html_join(
            "",
            "<li>{}: {} participants, {}</li>",
            ((localtime(c.started_at), c.participants, CollectionAdmin.zip(None, c)) for c in glance.collections),  # type: ignore[arg-type]
        )
        return format_html(
            "<strong>{}</strong>. Headcount {}: {} ready, {} in use, {} starting; {} in the queue.<ul>{}</ul>"
            "Warms from {} ({} s ahead, from the pools' measured fill); notebooks kept until {}, then collected and the pools drained.<br>"
            '<a href="{}">Broadcast to this workshop</a><br>'
            "Collected work: <ul>{}</ul>",
            glance.state,
            glance.headcount,
            glance.ready,
            glance.in_use,
            glance.starting,
            glance.queued,
            each_pool,
            f"{workshop.local(workshop.warms_at):%Y-%m-%d %H:%M:%S}",
            workshop.lead_seconds,
            f"{workshop.local(workshop.closes_at):%Y-%m-%d %H:%M:%S}",
            reverse("admin:pool_workshop_broadcast", args=[workshop.pk]),
            collections or "none yet",
        )
